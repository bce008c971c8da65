"""OrderService's pure rules: id and address validation, cancellation fee, returns, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.orders import rules
from services.orders.rules import OrderRuleError

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)

INJECTIONS = [
    '{"$ne": null}',
    "1234567890' || '1",
    "1234567890\n",  # `$` alone would accept a trailing newline
    "123456789",
    "12345678901",
    "１２３４５６７８９０",  # full-width digits
    "",
    "$where",
]


@pytest.mark.parametrize("bad", INJECTIONS)
def test_order_ids_must_be_exactly_ten_ascii_digits(bad: str) -> None:
    with pytest.raises(OrderRuleError) as err:
        rules.validate_order_id(bad)
    assert err.value.kind == "invalid_argument"
    assert "order_id" in err.value.message


def test_valid_ids_pass_unchanged() -> None:
    assert rules.validate_order_id("7730192846") == "7730192846"
    assert rules.validate_user_id("u1001") == "u1001"
    assert rules.validate_product_ids(["P10001", "P10002", "P10001"]) == ["P10001", "P10002"]


@pytest.mark.parametrize("bad", ['{"$gt": ""}', "u1001\n", "", "a" * 65, "u 1001", "用户"])
def test_user_ids_are_validated(bad: str) -> None:
    with pytest.raises(OrderRuleError, match="user_id") as err:
        rules.validate_user_id(bad)
    assert err.value.kind == "invalid_argument"


def test_product_ids_are_validated_and_bounded() -> None:
    with pytest.raises(OrderRuleError, match="P and 5 digits"):
        rules.validate_product_ids(["P10001", '{"$ne": 1}'])
    with pytest.raises(OrderRuleError, match="at most 50"):
        rules.validate_product_ids([f"P{10000 + i}" for i in range(51)])


def test_error_messages_quote_customer_text_bounded() -> None:
    with pytest.raises(OrderRuleError) as err:
        rules.validate_order_id("9" * 500)
    assert len(err.value.message) < 200


def test_list_limit_and_status_filter() -> None:
    assert rules.validate_list_limit(0) == rules.LIST_LIMIT_DEFAULT
    assert rules.validate_list_limit(1) == 1
    assert rules.validate_list_limit(50) == 50
    for bad in (-1, 51, 1000):
        with pytest.raises(OrderRuleError, match="1 to 50"):
            rules.validate_list_limit(bad)
    assert rules.validate_status_filter("") is None
    assert rules.validate_status_filter("shipped") == "shipped"
    with pytest.raises(OrderRuleError, match="not an order status"):
        rules.validate_status_filter('{"$ne": "x"}')


def test_reason_is_bounded_plain_text() -> None:
    assert rules.validate_reason("  拍错了 \n ") == "拍错了"
    with pytest.raises(OrderRuleError, match="500 or fewer"):
        rules.validate_reason("x" * 501)
    with pytest.raises(OrderRuleError, match="control characters"):
        rules.validate_reason("bad\x00reason")


GOOD_ADDRESS = {
    "name": " 王小明 ",
    "phone": "+86 138 0013 8000",
    "line1": "浦东新区世纪大道100号",
    "line2": "",
    "city": "上海市",
    "region": "上海市",
    "postal_code": "200120",
    "country": "cn",
}


def test_valid_address_is_trimmed_and_country_upper_cased() -> None:
    addr = rules.validate_address(GOOD_ADDRESS)
    assert addr["name"] == "王小明" and addr["country"] == "CN"
    assert set(addr) == set(rules.ADDRESS_FIELDS)


def test_address_country_may_be_left_empty() -> None:
    assert rules.validate_address({**GOOD_ADDRESS, "country": ""})["country"] == ""


def test_address_problems_are_all_listed() -> None:
    with pytest.raises(OrderRuleError) as err:
        rules.validate_address({"name": "", "phone": "", "line1": "", "city": ""})
    assert err.value.kind == "invalid_argument" and err.value.reason == "invalid_address"
    for name in ("name", "phone", "line1", "city"):
        assert f"{name} is required" in err.value.message
    assert "send the address again" in err.value.message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("name", "x" * 51, "name is longer than 50"),
        ("line1", "路" * 121, "line1 is longer than 120"),
        ("phone", "call me maybe", "phone must be"),
        ("phone", "12345", "phone must be"),
        ("phone", "1" * 16, "phone must be"),
        ("postal_code", "2001<20>", "postal_code must be"),
        ("country", "CHN", "country must be"),
        ("country", "中国", "country must be"),
        ("city", "上海\x1b[31m", "city contains control characters"),
    ],
)
def test_address_field_rules(field: str, value: str, expected: str) -> None:
    with pytest.raises(OrderRuleError, match="shipping address is not valid") as err:
        rules.validate_address({**GOOD_ADDRESS, field: value})
    assert expected in err.value.message


def _order(status: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": "7730192846",
        "user_id": "u1001",
        "status": status,
        "total_cents": 30000,
        "items": [
            {"product_id": "P10001", "quantity": 2, "unit_price_cents": 5000},
            {"product_id": "P10002", "quantity": 1, "unit_price_cents": 20000},
        ],
        "refund": {"status": "none", "amount_cents": 0},
    }
    doc.update(extra)
    return doc


def test_cancellation_fee_rule() -> None:
    fee = rules.cancellation_fee_cents
    assert fee("pending", 30000, None, NOW) == 0
    assert fee("paid", 30000, NOW - timedelta(hours=1), NOW) == 0
    assert fee("paid", 30000, NOW - timedelta(hours=24), NOW) == 0  # the 24th hour is still free
    assert fee("paid", 30000, NOW - timedelta(hours=24, seconds=1), NOW) == 1500  # 5%
    assert fee("paid", 1_000_000, NOW - timedelta(days=3), NOW) == rules.CANCELLATION_FEE_CAP_CENTS


def test_policy_texts_state_the_numbers_of_the_rule() -> None:
    assert str(rules.FREE_CANCELLATION_HOURS) in rules.CANCELLATION_POLICY["en"]
    assert f"{rules.CANCELLATION_FEE_PERCENT}%" in rules.CANCELLATION_POLICY["zh"]
    assert f"¥{rules.CANCELLATION_FEE_CAP_CENTS // 100}" in rules.CANCELLATION_POLICY["en"]
    assert f"{rules.RETURN_WINDOW_DAYS} 天" in rules.RETURN_POLICY["zh"]


def test_plan_cancellation_refunds_paid_orders_minus_fee() -> None:
    plan = rules.plan_cancellation(_order("paid", paid_at=NOW - timedelta(hours=30)), NOW)
    assert plan.fee_cents == 1500
    assert plan.refund["status"] == "pending" and plan.refund["amount_cents"] == 28500
    unpaid = rules.plan_cancellation(_order("pending"), NOW)
    assert unpaid.fee_cents == 0 and unpaid.refund["status"] == "none"


@pytest.mark.parametrize(
    ("status", "reason", "text"),
    [
        ("shipped", "order_shipped", "order 7730192846 has shipped; it can no longer be cancelled"),
        ("delivered", "order_delivered", "can be returned within 7 days"),
        ("cancelled", "already_cancelled", "order 7730192846 is already cancelled"),
        ("returned", "order_returned", "has been returned"),
    ],
)
def test_cancel_only_before_shipment(status: str, reason: str, text: str) -> None:
    with pytest.raises(OrderRuleError) as err:
        rules.plan_cancellation(_order(status), NOW)
    assert err.value.kind == "failed_precondition" and err.value.reason == reason
    assert text in err.value.message


def test_address_change_only_before_shipment() -> None:
    rules.check_address_changeable("7730192846", "pending")
    rules.check_address_changeable("7730192846", "paid")
    for status in ("shipped", "delivered", "cancelled", "returned"):
        with pytest.raises(OrderRuleError, match="7730192846") as err:
            rules.check_address_changeable("7730192846", status)
        assert err.value.kind == "failed_precondition"


def _delivered(days_ago: float, **extra: Any) -> dict[str, Any]:
    delivered_at = NOW - timedelta(days=days_ago)
    return _order(
        "delivered",
        shipment={"delivered_at": delivered_at},
        return_deadline=rules.return_deadline_for(delivered_at),
        **extra,
    )


def test_return_of_all_items_inside_the_window() -> None:
    plan = rules.plan_return(_delivered(2), [], NOW)
    assert plan.return_id == "R7730192846"
    assert plan.product_ids == ["P10001", "P10002"]
    assert plan.refund_cents == 30000


def test_return_of_some_items_refunds_their_price() -> None:
    plan = rules.plan_return(_delivered(2), ["P10001"], NOW)
    assert plan.product_ids == ["P10001"] and plan.refund_cents == 10000


def test_return_window_boundaries() -> None:
    rules.plan_return(_delivered(rules.RETURN_WINDOW_DAYS), [], NOW)  # the last moment
    with pytest.raises(OrderRuleError) as err:
        rules.plan_return(_delivered(rules.RETURN_WINDOW_DAYS + 0.01), [], NOW)
    assert err.value.reason == "return_window_closed"
    assert "closed on 2025-03-10 11:45 UTC" in err.value.message


def test_return_deadline_falls_back_to_delivery_date() -> None:
    order = _delivered(2)
    del order["return_deadline"]
    assert rules.plan_return(order, [], NOW).refund_cents == 30000
    order["shipment"] = {}
    with pytest.raises(OrderRuleError) as err:
        rules.plan_return(order, [], NOW)
    assert err.value.reason == "no_delivery_date"


def test_return_only_for_items_of_the_order() -> None:
    with pytest.raises(OrderRuleError) as err:
        rules.plan_return(_delivered(1), ["P10001", "P99999"], NOW)
    assert err.value.kind == "invalid_argument" and err.value.reason == "not_an_item"
    assert "P99999 is not an item of order 7730192846" in err.value.message


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("pending", "not_shipped"),
        ("paid", "not_shipped"),
        ("shipped", "not_delivered"),
        ("cancelled", "order_cancelled"),
        ("returned", "already_returned"),
    ],
)
def test_return_only_for_delivered_orders(status: str, reason: str) -> None:
    with pytest.raises(OrderRuleError) as err:
        rules.plan_return(_order(status), [], NOW)
    assert err.value.kind == "failed_precondition" and err.value.reason == reason


def test_one_return_per_order() -> None:
    order = _delivered(1, refund={"status": "pending", "amount_cents": 100})
    with pytest.raises(OrderRuleError) as err:
        rules.plan_return(order, [], NOW)
    assert err.value.reason == "return_open" and "R7730192846" in err.value.message


def test_not_found_message_names_only_the_order_id() -> None:
    err = rules.not_found("7730192846")
    assert err.kind == "not_found" and err.message == "no order 7730192846 was found"


def test_db_timeout_follows_the_grpc_deadline() -> None:
    assert rules.db_timeout_seconds(None) == rules.DEFAULT_DB_TIMEOUT_S
    assert rules.db_timeout_seconds(1e9) == rules.DEFAULT_DB_TIMEOUT_S
    assert rules.db_timeout_seconds(0.3) == pytest.approx(0.3 - rules.DEADLINE_MARGIN_S)
    assert rules.db_timeout_seconds(0.004) is None
    assert rules.db_timeout_seconds(-1.0) is None
