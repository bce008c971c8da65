"""MongoDB access shared by services: one client per process, the database from settings.

Queries must run on both MongoDB 7 and FerretDB (SQLite): no transactions, change streams,
TTL indexes, $lookup/$facet/$sample, $text or collation.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

from pymongo import AsyncMongoClient, MongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.collection import Collection
from pymongo.database import Database

from services.runtime import metrics
from services.runtime.settings import Settings

# Identifiers from customers are validated against these before any query, and only ever used as
# plain string values in a filter, never as objects (so no operator injection is possible).
# \Z, not $: `$` would accept a trailing newline.
USER_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}\Z")
ORDER_ID_RE = re.compile(r"^[0-9]{10}\Z")
# An order id inside free text: exactly 10 digits. Longer digit runs (phones, cards) are not
# order ids, and neither are digits glued to other digits.
ORDER_ID_IN_TEXT_RE = re.compile(r"(?<![0-9])([0-9]{10})(?![0-9])")
PRODUCT_ID_RE = re.compile(r"^P[0-9]{5}\Z")
CONVERSATION_ID_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,128}\Z")
MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,128}\Z")


# FerretDB 1.24 on SQLite hangs on an update command of more than about 100 statements: it holds
# one of its pooled SQLite connections per statement until the command ends, and once the pool is
# used up it answers nothing, to anyone, until restarted (measured: 100 upserts of existing FAQ
# documents in 0.04 s, 110 never answered). Bulk updates go in chunks well under that.
UPDATE_CHUNK = 25


def bulk_write_chunked(collection: Collection[Any], ops: Sequence[Any]) -> None:
    """``bulk_write(ops, ordered=False)`` in chunks of UPDATE_CHUNK (see there)."""
    for start in range(0, len(ops), UPDATE_CHUNK):
        collection.bulk_write(list(ops[start : start + UPDATE_CHUNK]), ordered=False)


class CommandTimer(monitoring.CommandListener):
    """Every command's duration in ``kefu_mongo_command_seconds``, by command and collection:
    what showed that FerretDB 1.24's SQLite backend scanned a collection for every write by
    ``_id`` (it never used its ``_id`` index; deploy/local/ferretdb/patches/0001 fixes that)."""

    def __init__(self) -> None:
        # the finish events carry the duration but not the collection: remember it per request
        self._collection: dict[tuple[Any, int], str] = {}
        self._lock = threading.Lock()  # sync clients report from their own threads

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        with self._lock:
            self._collection[(event.connection_id, event.request_id)] = (
                target if isinstance(target, str) else ""
            )

    def _finished(self, event: Any, outcome: str) -> None:
        with self._lock:
            collection = self._collection.pop((event.connection_id, event.request_id), None)
        if collection is not None:
            metrics.MONGO_COMMAND_SECONDS.labels(event.command_name, collection, outcome).observe(
                event.duration_micros / 1e6
            )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._finished(event, "ok")

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._finished(event, "error")


COMMAND_TIMER = CommandTimer()


def sync_db(settings: Settings, timeout_ms: int = 5000) -> Database:
    client: MongoClient = MongoClient(
        settings.mongo_uri,
        serverSelectionTimeoutMS=timeout_ms,
        tz_aware=True,
        event_listeners=[COMMAND_TIMER],
    )
    return client[settings.mongo_db]


def async_db(settings: Settings, timeout_ms: int = 5000) -> AsyncDatabase:
    client: AsyncMongoClient = AsyncMongoClient(
        settings.mongo_uri,
        serverSelectionTimeoutMS=timeout_ms,
        tz_aware=True,
        event_listeners=[COMMAND_TIMER],
    )
    return client[settings.mongo_db]
