"""Bulk updates against a real FerretDB: more than 100 in one command used to hang the server."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import MongoClient, UpdateOne

from services.reply.faq import load_faq_files, seed_faq
from services.runtime.mongo import UPDATE_CHUNK, bulk_write_chunked

pytestmark = pytest.mark.integration


def test_seeding_the_faq_twice_updates_every_entry(ferretdb_uri: str) -> None:
    # the second `kefu seed` (110 upserts of existing documents in one command) never returned,
    # and FerretDB answered nothing more until restarted
    client: MongoClient[dict[str, Any]] = MongoClient(ferretdb_uri, socketTimeoutMS=20_000)
    try:
        db = client["kefu_bulk_test"]
        entries = len(load_faq_files())
        assert entries > 100  # the case that hung
        assert seed_faq(db) == entries
        assert seed_faq(db) == entries
        assert db.faq.count_documents({}) == entries
    finally:
        client.close()


def test_chunked_bulk_writes_of_many_updates_all_apply(ferretdb_uri: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(ferretdb_uri, socketTimeoutMS=20_000)
    try:
        coll = client["kefu_bulk_test"]["counters"]
        n = 6 * UPDATE_CHUNK + 7
        ops = [UpdateOne({"_id": i}, {"$inc": {"n": 1}}, upsert=True) for i in range(n)]
        bulk_write_chunked(coll, ops)
        bulk_write_chunked(coll, ops)
        assert coll.count_documents({"n": 2}) == n
        bulk_write_chunked(coll, [])  # nothing to write is no error
    finally:
        client.close()
