"""MongoDB documents → training data, without a database (store.py's pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.models import registry
from services.recommend.model import Interaction, TrainConfig
from services.recommend.recommender import Recommender
from services.recommend.store import (
    RECOMMEND_VERSIONS_KEPT,
    interaction_from_document,
    load_model,
    merge_purchases,
    purchases_from_order,
    train_and_publish,
)

AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
T = AT.timestamp()


def test_interaction_documents() -> None:
    doc = {
        "_id": "e1",
        "user_id": "u1",
        "product_id": "P10001",
        "kind": "cart",
        "quantity": 2,
        "at": AT,
    }
    assert interaction_from_document(doc) == Interaction("u1", "P10001", "cart", T, 2)
    naive = {**doc, "at": AT.replace(tzinfo=None)}  # a client without tz_aware
    assert interaction_from_document(naive) == Interaction("u1", "P10001", "cart", T, 2)
    assert interaction_from_document({**doc, "user_id": {"$ne": 1}}) == "invalid_user_id"
    assert interaction_from_document({**doc, "product_id": "X"}) == "invalid_product_id"
    assert interaction_from_document({**doc, "kind": "like"}) == "invalid_kind"
    assert interaction_from_document({**doc, "at": "2026-11-01"}) == "invalid_at"


def test_orders_become_purchases() -> None:
    order = {
        "_id": "2026110100",
        "user_id": "u1",
        "status": "delivered",
        "created_at": AT,
        "items": [
            {"product_id": "P10001", "quantity": 1, "price_cents": 100},
            {"product_id": "P10002", "quantity": 3},
        ],
    }
    assert purchases_from_order(order) == [
        Interaction("u1", "P10001", "purchase", T, 1),
        Interaction("u1", "P10002", "purchase", T, 3),
    ]
    assert purchases_from_order({**order, "status": "cancelled"}) == "cancelled_order"
    assert purchases_from_order({**order, "items": []}) == "no_items"
    assert purchases_from_order({**order, "items": [{"product_id": 1}]}) == "invalid_product_id"
    assert purchases_from_order({**order, "created_at": None}) == "invalid_created_at"


def test_unpaid_orders_are_carts() -> None:
    order = {
        "user_id": "u1",
        "status": "pending",
        "created_at": AT,
        "items": [{"product_id": "P10001", "quantity": 2}],
    }
    assert purchases_from_order(order) == [Interaction("u1", "P10001", "cart", T, 2)]


def test_a_purchase_in_both_sources_counts_once() -> None:
    events = [Interaction("u1", "P10001", "view", T), Interaction("u1", "P10001", "purchase", T)]
    orders = [
        Interaction("u1", "P10001", "purchase", T - 2 * 86_400),  # paid two days after ordering
        Interaction("u1", "P10001", "purchase", T + 30 * 86_400),  # bought again a month later
        Interaction("u1", "P10001", "cart", T),  # an unpaid order: no cart event to match
        Interaction("u2", "P10001", "purchase", T),
    ]
    merged = merge_purchases(events, orders)
    assert merged == [*events, *orders[1:]]


def test_train_and_publish_writes_a_servable_version(tmp_path: Path) -> None:
    rows = [
        Interaction(f"u{u}", pid, "purchase", T + i)
        for u in range(6)
        for i, pid in enumerate(["P10001", "P10002", "P10003"] if u % 2 else ["P20001", "P20002"])
    ]
    result = train_and_publish(
        rows, tmp_path, config=TrainConfig(algorithm="item_cosine"), source="test"
    )
    assert result.published and result.version_dir.parent == tmp_path / "recommend"
    manifest = registry.read_manifest(result.version_dir)
    assert manifest["source"] == "test"
    assert manifest["trained_on"] == {"n_users": 6, "n_items": 5, "n_interactions": 15}
    assert "validation_hr@10" in manifest["metrics"]
    model, version = load_model(tmp_path)
    assert version == result.version_dir.name
    rec = Recommender(model, version=version)
    top = rec.recommend([Interaction("new", "P10001", "purchase", T)], n=1)
    assert top[0].product_id in {"P10002", "P10003"}
    assert rec.version == version


def test_publishing_keeps_only_the_newest_versions(tmp_path: Path) -> None:
    rows = [Interaction(f"u{u}", f"P1000{u % 3}", "purchase", T + u) for u in range(6)]
    versions = [
        train_and_publish(rows, tmp_path, config=TrainConfig(algorithm="item_cosine")).version_dir
        for _ in range(RECOMMEND_VERSIONS_KEPT + 2)
    ]
    kept = registry.list_versions(tmp_path, "recommend")
    assert kept == [v.name for v in versions[-RECOMMEND_VERSIONS_KEPT:]]
    assert registry.current_version(tmp_path, "recommend") == versions[-1].name


def test_nothing_to_train_on_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"kefu\.behavior\.v1"):
        train_and_publish([], tmp_path)
    with pytest.raises(registry.ModelNotFoundError, match="kefu models build"):
        load_model(tmp_path)
