"""MongoDB access shared by services: one client per process, the database from settings.

Queries must run on both MongoDB 7 and FerretDB (SQLite): no transactions, change streams,
TTL indexes, $lookup/$facet/$sample, $text or collation.
"""

from __future__ import annotations

import re

from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.database import Database

from services.runtime.settings import Settings

# Identifiers from customers are validated against these before any query, and only ever used as
# plain string values in a filter, never as objects (so no operator injection is possible).
# \Z, not $: `$` would accept a trailing newline.
USER_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}\Z")
ORDER_ID_RE = re.compile(r"^[0-9]{10}\Z")
PRODUCT_ID_RE = re.compile(r"^P[0-9]{5}\Z")
CONVERSATION_ID_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,128}\Z")
MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,128}\Z")


def sync_db(settings: Settings, timeout_ms: int = 5000) -> Database:
    client: MongoClient = MongoClient(
        settings.mongo_uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True
    )
    return client[settings.mongo_db]


def async_db(settings: Settings, timeout_ms: int = 5000) -> AsyncDatabase:
    client: AsyncMongoClient = AsyncMongoClient(
        settings.mongo_uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True
    )
    return client[settings.mongo_db]
