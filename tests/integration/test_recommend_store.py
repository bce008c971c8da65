"""The recommender's MongoDB side against a real FerretDB: behaviour in, training data out,
a customer's history, the catalog, train-and-publish, and `kefu eval recommend --from-mongo`.

FerretDB is started by ``kefu.localstack`` on a free port with its data in a temporary folder,
so these tests never touch the developer's running stack.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pymongo.database import Database

from kefu import localstack
from kefu.commands.recommend import eval_recommend_cmd
from services.orders.seed import seed
from services.recommend.behavior import (
    COLLECTION,
    ensure_interaction_indexes,
    ensure_interaction_indexes_async,
    parse_behavior,
    save_interaction,
    save_interaction_async,
)
from services.recommend.evaluate import read_jsonl
from services.recommend.model import TrainConfig
from services.recommend.store import (
    load_catalog,
    load_catalog_async,
    load_recommender,
    load_training_data,
    recent_history,
    recent_history_async,
    train_and_publish,
)
from services.runtime.mongo import async_db, sync_db
from services.runtime.settings import Settings, load_settings

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def mongo_uri(ferretdb_uri: str) -> str:
    return ferretdb_uri


def _settings(mongo_uri: str) -> Settings:
    return load_settings(
        {"KEFU_MONGO_URI": mongo_uri, "KEFU_MONGO_DB": f"rec_{uuid.uuid4().hex[:8]}"}
    )


@pytest.fixture()
def settings(mongo_uri: str) -> Settings:
    return _settings(mongo_uri)


@pytest.fixture()
def db(settings: Settings) -> Database:
    return sync_db(settings)


def _event(
    user: str, product: str, kind: str, at: datetime, event_id: str | None = None, quantity: int = 1
) -> bytes:
    return json.dumps(
        {
            "eventId": event_id or uuid.uuid4().hex,
            "userId": user,
            "productId": product,
            "kind": kind,
            "quantity": quantity,
            "at": at.isoformat().replace("+00:00", "Z"),
        }
    ).encode()


def _product(pid: str, category: str, stock: int = 10) -> dict[str, Any]:
    zh, en = {"shoes": ("鞋靴", "Shoes"), "phones": ("手机配件", "Phone gear")}[category]
    return {
        "_id": pid,
        "name_zh": f"{zh}{pid}",
        "name_en": f"{en} {pid}",
        "category": category,
        "category_zh": zh,
        "category_en": en,
        "price_cents": 1000,
        "stock": stock,
        "tags": [category],
    }


def test_behaviour_is_stored_once_and_indexed(db: Database) -> None:
    ensure_interaction_indexes(db)
    ensure_interaction_indexes(db)  # start-up runs it every time: must be idempotent
    names = set(db[COLLECTION].index_information())
    assert {"user_id_at", "product_id"} <= names
    doc = parse_behavior(_event("u1", "P10001", "cart", NOW, "evt-1", 2))
    assert save_interaction(db, dict(doc)) is True
    assert save_interaction(db, dict(doc)) is False  # redelivered: not stored twice
    stored = db[COLLECTION].find_one({"_id": "evt-1"})
    assert stored is not None
    assert stored["kind"] == "cart" and stored["quantity"] == 2
    assert stored["at"] == NOW
    assert db[COLLECTION].count_documents({}) == 1


def test_recent_history_is_newest_first_and_validated(db: Database) -> None:
    ensure_interaction_indexes(db)
    for minutes in range(60):
        doc = parse_behavior(_event("u7", "P10001", "view", NOW - timedelta(minutes=minutes)))
        save_interaction(db, doc)
    save_interaction(db, parse_behavior(_event("other", "P10002", "view", NOW)))
    history = recent_history(db, "u7", limit=50)
    assert len(history) == 50
    assert [h.at for h in history] == sorted((h.at for h in history), reverse=True)
    assert history[0].at == NOW.timestamp()
    assert {h.user_id for h in history} == {"u7"}
    with pytest.raises(ValueError, match="user_id"):
        recent_history(db, '{"$ne": null}')


def test_training_data_merges_behaviour_and_orders(db: Database) -> None:
    day = timedelta(days=1)
    for doc in (
        parse_behavior(_event("u1", "P10001", "view", NOW - 3 * day)),
        parse_behavior(_event("u1", "P10001", "purchase", NOW - 2 * day)),
    ):
        save_interaction(db, doc)
    # Junk that slipped in some other way is counted, not trained on, and not fatal.
    db[COLLECTION].insert_one(
        {"_id": "junk", "user_id": "u1", "product_id": "X", "kind": "view", "at": NOW}
    )
    db["orders"].insert_many(
        [
            {
                "_id": "2026000001",
                "user_id": "u1",
                "status": "delivered",
                "created_at": NOW - 3 * day,
                "items": [
                    {"product_id": "P10001", "quantity": 1},
                    {"product_id": "P10002", "quantity": 2},
                ],
            },
            {
                "_id": "2026000002",
                "user_id": "u2",
                "status": "cancelled",
                "created_at": NOW,
                "items": [{"product_id": "P10003", "quantity": 1}],
            },
            {
                "_id": "2026000003",
                "user_id": "u2",
                "status": "pending",
                "created_at": NOW,
                "items": [{"product_id": "P10004", "quantity": 1}],
            },
        ]
    )
    data = load_training_data(db)
    got = sorted((i.user_id, i.product_id, i.kind) for i in data.interactions)
    assert got == [
        ("u1", "P10001", "purchase"),  # the event; the order's copy of it is not counted again
        ("u1", "P10001", "view"),
        ("u1", "P10002", "purchase"),
        ("u2", "P10004", "cart"),
    ]
    assert data.skipped == {"invalid_product_id": 1, "cancelled_order": 1}


def test_async_helpers(settings: Settings) -> None:
    async def scenario() -> tuple[bool, bool, list[str], int]:
        adb = async_db(settings)
        try:
            await ensure_interaction_indexes_async(adb)
            doc = parse_behavior(_event("u9", "P10005", "purchase", NOW, "evt-async"))
            first = await save_interaction_async(adb, dict(doc))
            again = await save_interaction_async(adb, dict(doc))
            history = await recent_history_async(adb, "u9")
            await adb["products"].insert_one(_product("P10005", "shoes"))
            catalog = await load_catalog_async(adb)
            return first, again, [h.product_id for h in history], len(catalog)
        finally:
            # its monitor tasks would otherwise outlive the loop ("Task was destroyed")
            await adb.client.close()

    assert asyncio.run(scenario()) == (True, False, ["P10005"], 1)


def test_train_publish_serve_and_fold_in(db: Database, tmp_path: Path) -> None:
    shoes = [f"P100{i:02d}" for i in range(10)]
    phones = [f"P200{i:02d}" for i in range(10)]
    db["products"].insert_many(
        [_product(p, "shoes") for p in shoes] + [_product(p, "phones") for p in phones]
    )
    db["products"].update_one({"_id": shoes[9]}, {"$set": {"stock": 0}})
    ensure_interaction_indexes(db)
    for u in range(30):
        aisle = shoes if u % 2 else phones
        for j in range(5):
            pid = aisle[(u + j * 3) % 10]
            save_interaction(
                db,
                parse_behavior(_event(f"c{u}", pid, "purchase", NOW - timedelta(days=10, hours=j))),
            )
    data = load_training_data(db)
    assert len(data.interactions) == 150 and not data.skipped
    result = train_and_publish(
        data.interactions,
        tmp_path,
        config=TrainConfig(algorithm="item_cosine"),
        source="mongodb:test",
    )
    rec = load_recommender(db, tmp_path)
    assert rec.version == result.version_dir.name and rec.catalog is not None
    assert len(rec.catalog) == 20

    # A brand-new customer looks at two pairs of shoes...
    for pid in shoes[:2]:
        save_interaction(db, parse_behavior(_event("newbie", pid, "view", NOW)))
    first = rec.recommend(recent_history(db, "newbie"), n=3, language="zh")
    assert [s.product_id[:3] for s in first] == ["P10"] * 3
    assert shoes[9] not in {s.product_id for s in first}  # sold out
    assert first[0].reason.startswith("和您看过的鞋靴")
    # ...then buys phone gear: the very next request reflects it, with no retraining.
    for pid in phones[:3]:
        save_interaction(
            db, parse_behavior(_event("newbie", pid, "purchase", NOW + timedelta(minutes=5)))
        )
    after = rec.recommend(recent_history(db, "newbie"), n=3, language="en")
    assert [s.product_id[:3] for s in after] == ["P20"] * 3
    assert after[0].reason.startswith("often bought together with Phone gear")
    assert load_catalog(db).get(shoes[9]).stock == 0  # type: ignore[union-attr]


def test_eval_from_mongo_on_the_demo_seed(settings: Settings, tmp_path: Path) -> None:
    db = sync_db(settings)
    seed(db, reset=True)
    data = load_training_data(db)
    assert len(data.interactions) > 1000
    # The seed's data are all usable; only its cancelled orders are left out, by design.
    assert set(data.skipped) <= {"cancelled_order"}
    export = tmp_path / "export.jsonl"
    env = {"KEFU_MONGO_URI": settings.mongo_uri, "KEFU_MONGO_DB": settings.mongo_db}
    result = CliRunner().invoke(
        eval_recommend_cmd,
        ["--from-mongo", "--export", str(export), "--algorithm", "item_cosine"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["data"] == f"mongodb:{settings.mongo_db}"
    assert summary["n_interactions"] == len(data.interactions)
    assert summary["n_test_users"] > 10
    # Model quality is the unit tests' business; here: the numbers are computed on this data.
    for name in ("model", "popularity"):
        assert summary[name]["n_users"] == summary["n_test_users"]
        assert 0.0 <= summary[name]["ndcg@10"] <= summary[name]["hr@10"] <= 1.0
    assert len(read_jsonl(export)) == len(data.interactions)


def test_unreachable_mongo_is_a_clear_error() -> None:
    port = localstack.free_port()
    env = {"KEFU_MONGO_URI": f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=300"}
    result = CliRunner().invoke(eval_recommend_cmd, ["--from-mongo"], env=env)
    assert result.exit_code == 1
    assert "cannot read interactions from MongoDB" in result.output
    assert "kefu stack up" in result.output
