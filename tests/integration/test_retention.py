"""`kefu prune`'s deletes against a real FerretDB: old bookkeeping goes, recent and waiting stays."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pymongo import MongoClient

from services.runtime.retention import prune

pytestmark = pytest.mark.integration


def test_prune_deletes_only_what_is_old_and_not_waiting_for_a_person(ferretdb_uri: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(ferretdb_uri, tz_aware=True)
    try:
        db = client["kefu_retention_test"]
        now = dt.datetime.now(dt.UTC)
        old, recent = now - dt.timedelta(days=40), now - dt.timedelta(days=2)
        db.ingest_seen.insert_many(
            [{"_id": "m-old", "at": old.timestamp()}, {"_id": "m-new", "at": recent.timestamp()}]
        )
        for name in ("reply_claims", "conversations"):
            db[name].insert_many([{"_id": "t-old", "at": old}, {"_id": "t-new", "at": recent}])
        db.dialogue_state.insert_many(
            [
                {"_id": "c-idle", "updated_at": old, "handoff": {"active": False}},
                {"_id": "c-waiting", "updated_at": old, "handoff": {"active": True}},
                {"_id": "c-no-handoff", "updated_at": old},
                {"_id": "c-live", "updated_at": recent, "handoff": {"active": False}},
            ]
        )
        db.handoffs.insert_one({"_id": "h-old", "at": old})

        counted = prune(db, dt.timedelta(days=30), dry_run=True)
        assert counted == {
            "ingest_seen": 1,
            "reply_claims": 1,
            "conversations": 1,
            "dialogue_state": 2,
        }
        assert db.ingest_seen.count_documents({}) == 2  # a dry run deletes nothing

        assert prune(db, dt.timedelta(days=30)) == counted
        assert [d["_id"] for d in db.ingest_seen.find()] == ["m-new"]
        for name in ("reply_claims", "conversations"):
            assert [d["_id"] for d in db[name].find()] == ["t-new"]
        assert sorted(d["_id"] for d in db.dialogue_state.find()) == ["c-live", "c-waiting"]
        assert db.handoffs.count_documents({}) == 1  # the agents' record is never pruned
        assert prune(db, dt.timedelta(days=30)) == dict.fromkeys(counted, 0)  # idempotent
    finally:
        client.drop_database("kefu_retention_test")
        client.close()
