"""Retention: delete the per-message bookkeeping that would otherwise grow forever.

What is pruned, by age (``kefu prune --older-than 30d``):

* ``ingest_seen``: message ids ingest has accepted (dedup of redeliveries). A redelivery older
  than the retention cannot arrive once Kafka's own retention is shorter, so keep this one at
  least as long as the topics' ``retention.ms``.
* ``reply_claims`` and ``conversations``: per-turn claims and transcripts.
* ``dialogue_state``: conversations not touched since the cutoff, except those waiting for a
  person (``handoff.active``), which an agent may still pick up.

``handoffs`` (the agents' record) and the order collections are never touched.

Why a command and not TTL indexes: FerretDB (the local stack) does not expire documents. On real
MongoDB, TTL indexes on the same fields do the same job. On FerretDB each prune reads its
collections once (filters other than ``_id`` are not pushed down to SQLite), so run it off-peak.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

_DURATION = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60}
MIN_RETENTION = dt.timedelta(hours=1)


class RetentionError(ValueError):
    """A retention that cannot be used (bad syntax or shorter than MIN_RETENTION)."""


def parse_retention(text: str) -> dt.timedelta:
    """``30d``, ``12h`` or ``90m``; at least an hour, so a typo cannot empty live state."""
    match = _DURATION.match(text)
    if not match:
        raise RetentionError(f"{text!r}: expected a number and a unit, e.g. 30d, 12h or 90m")
    age = dt.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if age < MIN_RETENTION:
        raise RetentionError(f"{text!r}: keep at least 1h (live conversations use these)")
    return age


@dataclass(frozen=True)
class PruneRule:
    collection: str
    filter: dict[str, Any]


def prune_rules(cutoff: dt.datetime) -> list[PruneRule]:
    """The filters selecting what is older than ``cutoff`` (timezone-aware), per collection.

    ingest stores ``at`` as epoch seconds, reply as a datetime: each filter uses its own type.
    """
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware")
    return [
        PruneRule("ingest_seen", {"at": {"$lt": cutoff.timestamp()}}),
        PruneRule("reply_claims", {"at": {"$lt": cutoff}}),
        PruneRule("conversations", {"at": {"$lt": cutoff}}),
        PruneRule(
            "dialogue_state",
            {"updated_at": {"$lt": cutoff}, "handoff.active": {"$ne": True}},
        ),
    ]


def prune(db: Database, older_than: dt.timedelta, *, dry_run: bool = False) -> dict[str, int]:
    """Delete (or with ``dry_run`` count) what is older than ``older_than``; per collection."""
    cutoff = dt.datetime.now(dt.UTC) - older_than
    counts: dict[str, int] = {}
    for rule in prune_rules(cutoff):
        collection = db[rule.collection]
        if dry_run:
            counts[rule.collection] = collection.count_documents(rule.filter)
        else:
            counts[rule.collection] = collection.delete_many(rule.filter).deleted_count
    return counts
