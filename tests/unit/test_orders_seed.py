"""The demo data set: deterministic, large enough, every order state, internally consistent."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from services.orders import rules
from services.orders.catalog import CATEGORIES
from services.orders.rules import OrderRuleError
from services.orders.seed import (
    DEMO_ORDER_IDS,
    DEMO_USERS,
    SCENARIO_STATUS,
    SCENARIOS,
    Dataset,
    build_dataset,
)
from services.runtime.mongo import ORDER_ID_RE, PRODUCT_ID_RE, USER_ID_RE

NOW = datetime(2025, 6, 1, 8, 30, 15, 123000, tzinfo=UTC)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return build_dataset(NOW)


def test_same_moment_gives_the_same_data(data: Dataset) -> None:
    assert build_dataset(NOW) == data


def test_dates_follow_now() -> None:
    later = build_dataset(NOW + timedelta(days=30))
    first = {o["_id"]: o for o in build_dataset(NOW).orders}
    for order in later.orders:
        assert order["created_at"] - first[order["_id"]]["created_at"] == timedelta(days=30)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_dataset(datetime(2025, 6, 1))


def test_sizes(data: Dataset) -> None:
    assert len(data.products) >= 200
    assert len(data.users) >= 30
    assert len(data.orders) >= 300
    assert len({p["category"] for p in data.products}) == len(CATEGORIES) >= 10
    assert Counter(u["language"] for u in data.users).keys() == {"zh", "en"}


def test_products_are_bilingual_and_some_sold_out(data: Dataset) -> None:
    ids = [p["_id"] for p in data.products]
    assert len(set(ids)) == len(ids) and all(PRODUCT_ID_RE.fullmatch(i) for i in ids)
    for p in data.products:
        assert any("\u4e00" <= c <= "\u9fff" for c in p["name_zh"]), p["name_zh"]
        assert p["name_en"].isascii() and p["name_en"], p["name_en"]
        assert (p["category_zh"], p["category_en"]) == CATEGORIES[p["category"]]
        assert p["price_cents"] > 0 and p["currency"] == "CNY"
        assert isinstance(p["stock"], int) and p["stock"] >= 0
    assert sum(p["stock"] == 0 for p in data.products) >= 5
    assert len({p["name_en"] for p in data.products}) == len(data.products)


def test_every_state_and_carrier_is_present(data: Dataset) -> None:
    assert set(Counter(o["status"] for o in data.orders)) == set(rules.STATUSES)
    assert set(Counter(o["refund"]["status"] for o in data.orders)) == set(rules.REFUND_STATUSES)
    carriers = {o["shipment"]["carrier"] for o in data.orders if o["shipment"]}
    assert carriers == {"顺丰", "京东", "中通", "UPS", "DHL"}
    delivered = [o for o in data.orders if o["status"] == "delivered"]
    assert any(o["return_deadline"] >= NOW for o in delivered)
    assert any(o["return_deadline"] < NOW for o in delivered)


def test_demo_users_have_an_order_in_every_scenario(data: Dataset) -> None:
    by_id = {o["_id"]: o for o in data.orders}
    users = {u["_id"]: u for u in data.users}
    assert users["u1001"]["language"] == "zh" and users["u2001"]["language"] == "en"
    for uid in DEMO_USERS:
        assert set(DEMO_ORDER_IDS[uid]) == set(SCENARIOS)
        for scenario, order_id in DEMO_ORDER_IDS[uid].items():
            order = by_id[order_id]
            assert order["user_id"] == uid
            assert order["status"] == SCENARIO_STATUS[scenario]


def test_orders_are_consistent(data: Dataset) -> None:
    products = {p["_id"]: p for p in data.products}
    users = {u["_id"] for u in data.users}
    ids = [o["_id"] for o in data.orders]
    assert len(set(ids)) == len(ids)
    invoices = [o["invoice_number"] for o in data.orders if o["invoice_number"]]
    assert len(set(invoices)) == len(invoices)
    for o in data.orders:
        assert ORDER_ID_RE.fullmatch(o["_id"]) and USER_ID_RE.fullmatch(o["user_id"])
        assert o["user_id"] in users
        assert o["items"] and all(i["product_id"] in products for i in o["items"])
        assert o["total_cents"] == sum(i["quantity"] * i["unit_price_cents"] for i in o["items"])
        rules.validate_address(o["shipping_address"])  # the reply stage can send it back as is
        assert o["created_at"] <= NOW
        assert bool(o["invoice_number"]) == (o["paid_at"] is not None)
        if o["paid_at"]:
            assert o["created_at"] <= o["paid_at"] <= NOW
        shipment = o["shipment"]
        assert (shipment is not None) == (o["status"] in ("shipped", "delivered", "returned"))
        if shipment:
            assert o["paid_at"] <= shipment["shipped_at"] <= NOW
            assert shipment["tracking_number"] and shipment["eta"] > shipment["shipped_at"]
            if o["status"] == "shipped":
                assert shipment["delivered_at"] is None and shipment["eta"] > NOW
            else:
                assert shipment["shipped_at"] <= shipment["delivered_at"] <= NOW
                assert o["return_deadline"] == rules.return_deadline_for(shipment["delivered_at"])
        refund = o["refund"]
        if refund["status"] != "none":
            assert 0 < refund["amount_cents"] <= o["total_cents"]
            assert refund["requested_at"] <= NOW
        if refund["status"] == "done":
            assert refund["requested_at"] <= refund["completed_at"] <= NOW


def test_returns_match_their_orders(data: Dataset) -> None:
    orders = {o["_id"]: o for o in data.orders}
    for ret in data.returns:
        order = orders[ret["order_id"]]
        assert ret["_id"] == rules.return_id_for(order["_id"])
        assert ret["user_id"] == order["user_id"]
        assert order["return_request"]["return_id"] == ret["_id"]
        assert order["refund"]["amount_cents"] == ret["refund_amount_cents"]
        assert set(ret["product_ids"]) <= set(rules.order_product_ids(order["items"]))
    with_return = {o["_id"] for o in data.orders if "return_request" in o}
    assert with_return == {r["order_id"] for r in data.returns}


def test_the_rules_agree_with_the_demo_scenarios(data: Dataset) -> None:
    by_id = {o["_id"]: o for o in data.orders}
    for uid in DEMO_USERS:
        ids = DEMO_ORDER_IDS[uid]
        assert rules.plan_cancellation(by_id[ids["pending"]], NOW).fee_cents == 0
        assert rules.plan_cancellation(by_id[ids["paid_recent"]], NOW).fee_cents == 0
        assert rules.plan_cancellation(by_id[ids["paid_old"]], NOW).fee_cents > 0
        assert rules.plan_return(by_id[ids["delivered_in_window"]], [], NOW).refund_cents > 0
        expected = {
            "shipped": "order_shipped",
            "delivered_out_window": "order_delivered",
            "cancelled_unpaid": "already_cancelled",
        }
        for scenario, reason in expected.items():
            with pytest.raises(OrderRuleError) as err:
                rules.plan_cancellation(by_id[ids[scenario]], NOW)
            assert err.value.reason == reason
        closed = {
            "delivered_out_window": "return_window_closed",
            "return_open": "return_open",
            "shipped": "not_delivered",
        }
        for scenario, reason in closed.items():
            with pytest.raises(OrderRuleError) as err:
                rules.plan_return(by_id[ids[scenario]], [], NOW)
            assert err.value.reason == reason


def test_interactions_are_consistent_with_orders(data: Dataset) -> None:
    products = {p["_id"]: p for p in data.products}
    kinds = Counter(i["kind"] for i in data.interactions)
    assert set(kinds) == {"view", "cart", "purchase"}
    assert kinds["view"] > kinds["cart"] > 0 and kinds["purchase"] > 0
    ids = [i["_id"] for i in data.interactions]
    assert len(set(ids)) == len(ids)
    for it in data.interactions:
        assert it["product_id"] in products and it["at"] <= NOW and it["quantity"] >= 1
    purchases = Counter(
        (i["user_id"], i["product_id"], i["at"])
        for i in data.interactions
        if i["kind"] == "purchase"
    )
    expected = Counter(
        (o["user_id"], item["product_id"], o["paid_at"])
        for o in data.orders
        if o["paid_at"] is not None
        for item in o["items"]
    )
    assert purchases == expected


def test_browsing_follows_each_customers_favourite_categories(data: Dataset) -> None:
    products = {p["_id"]: p for p in data.products}
    for user in data.users:
        favourites = set(user["favourite_categories"])
        views = [
            i for i in data.interactions if i["user_id"] == user["_id"] and i["kind"] == "view"
        ]
        liked = sum(products[v["product_id"]]["category"] in favourites for v in views)
        assert liked / len(views) > 0.5, user["_id"]
