"""OrderService's business rules and input validation, as pure functions (no I/O).

The rules live here once so that the servicer enforces them and the reply stage can state them
(``CANCELLATION_POLICY``, ``RETURN_POLICY``, ``cancellation_fee_cents``) without re-deriving
them. This module imports nothing from another stage, only the runtime's id patterns.

Every refusal is an ``OrderRuleError`` carrying a gRPC-independent ``kind`` (how the servicer
answers), a machine-readable ``reason`` (sent as ``kefu-reason`` trailing metadata so the reply
stage can phrase it in the customer's language) and an English message that can be shown as is.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from services.runtime.mongo import ORDER_ID_RE, PRODUCT_ID_RE, USER_ID_RE

STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "returned")
REFUND_STATUSES = ("none", "pending", "done")
CURRENCY = "CNY"

# Before shipment the warehouse has not picked the parcel, so an order can still be stopped.
CANCELLABLE_STATUSES = ("pending", "paid")
ADDRESS_CHANGE_STATUSES = ("pending", "paid")

# Cancellation fee: free while unpaid, and for FREE_CANCELLATION_HOURS after payment; later (still
# before shipment, as the order is being packed) a fee of CANCELLATION_FEE_PERCENT of the total,
# at most CANCELLATION_FEE_CAP_CENTS. The rest of a paid order is refunded.
FREE_CANCELLATION_HOURS = 24
CANCELLATION_FEE_PERCENT = 5
CANCELLATION_FEE_CAP_CENTS = 2000

# Returns: the 7-day no-questions-asked window (七天无理由退货), counted from delivery.
RETURN_WINDOW_DAYS = 7

CANCELLATION_POLICY = {
    "zh": (
        "订单发货前可以取消：未付款或付款后 24 小时内取消免费；付款超过 24 小时、尚未发货时取消，"
        "收取订单金额 5% 的手续费（最多 20 元），其余款项原路退回。订单发货后不能取消，"
        "签收后 7 天内可申请退货。"
    ),
    "en": (
        "An order can be cancelled until it ships. Cancelling is free while it is unpaid and for "
        "24 hours after payment; after that, and still before shipment, the fee is 5% of the "
        "order total (at most ¥20) and the rest is refunded to the original payment method. "
        "Shipped orders cannot be cancelled; you can return them within 7 days of delivery."
    ),
}
RETURN_POLICY = {
    "zh": (
        "签收后 7 天内可申请无理由退货（整单或部分商品），每个订单可申请一次；"
        "退款金额为退回商品的实付价格，审核通过后原路退回。"
    ),
    "en": (
        "Items can be returned for any reason within 7 days of delivery (the whole order or some "
        "of its items), once per order; the refund is the price paid for the returned items, to "
        "the original payment method."
    ),
}

MAX_REASON_CHARS = 500
MAX_RETURN_PRODUCTS = 50
LIST_LIMIT_DEFAULT = 10
LIST_LIMIT_MAX = 50

ErrorKind = Literal["invalid_argument", "not_found", "failed_precondition"]


class OrderRuleError(Exception):
    """A request the service refuses; ``message`` is safe to show to the customer."""

    def __init__(self, kind: ErrorKind, reason: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason
        self.message = message


def invalid(reason: str, message: str) -> OrderRuleError:
    return OrderRuleError("invalid_argument", reason, message)


def refused(reason: str, message: str) -> OrderRuleError:
    return OrderRuleError("failed_precondition", reason, message)


def not_found(order_id: str) -> OrderRuleError:
    # One message for "no such order" and "someone else's order", so ids cannot be probed.
    return OrderRuleError("not_found", "order_not_found", f"no order {order_id} was found")


def _shown(value: str) -> str:
    """A customer-supplied value quoted in an error message: bounded, control characters escaped."""
    return repr(value[:40] + ("…" if len(value) > 40 else ""))


# --- identifiers -------------------------------------------------------------------------------
# fullmatch, not match: the runtime patterns end in `$`, which also matches before a final "\n".


def validate_user_id(user_id: str) -> str:
    if not user_id:
        raise invalid("missing_user_id", "user_id is required: pass the conversation's user id")
    if not USER_ID_RE.fullmatch(user_id):
        raise invalid(
            "invalid_user_id",
            f"user_id {_shown(user_id)} is not valid: use 1-64 letters, digits, '_' or '-'",
        )
    return user_id


def validate_order_id(order_id: str) -> str:
    if not order_id:
        raise invalid("missing_order_id", "order_id is required: ask the customer for it")
    if not ORDER_ID_RE.fullmatch(order_id):
        raise invalid(
            "invalid_order_id",
            f"order_id {_shown(order_id)} is not valid: an order number has exactly 10 digits, "
            "e.g. 7730192846",
        )
    return order_id


def validate_product_ids(product_ids: Sequence[str]) -> list[str]:
    """Distinct product ids in the order given; each must look like P10001."""
    if len(product_ids) > MAX_RETURN_PRODUCTS:
        raise invalid(
            "too_many_products",
            f"{len(product_ids)} product_ids given: at most {MAX_RETURN_PRODUCTS} per return",
        )
    for pid in product_ids:
        if not PRODUCT_ID_RE.fullmatch(pid):
            raise invalid(
                "invalid_product_id",
                f"product_id {_shown(pid)} is not valid: a product id is P and 5 digits, "
                "e.g. P10001",
            )
    return list(dict.fromkeys(product_ids))


def validate_list_limit(limit: int) -> int:
    """0 (proto3's unset) means the default; otherwise 1..LIST_LIMIT_MAX."""
    if limit == 0:
        return LIST_LIMIT_DEFAULT
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise invalid("invalid_limit", f"limit {limit} is out of range: use 1 to {LIST_LIMIT_MAX}")
    return limit


def validate_status_filter(status: str) -> str | None:
    if not status:
        return None
    if status not in STATUSES:
        raise invalid(
            "invalid_status",
            f"status {_shown(status)} is not an order status: use one of {', '.join(STATUSES)}",
        )
    return status


def validate_reason(reason: str) -> str:
    """Free text stored as a plain string value; bounded and without control characters."""
    if len(reason) > MAX_REASON_CHARS:
        raise invalid(
            "reason_too_long",
            f"reason has {len(reason)} characters: shorten it to {MAX_REASON_CHARS} or fewer",
        )
    if _has_control_chars(reason, allow_newlines=True):
        raise invalid("invalid_reason", "reason contains control characters: send plain text")
    return reason.strip()


def _has_control_chars(text: str, allow_newlines: bool = False) -> bool:
    allowed = {"\n", "\t"} if allow_newlines else set()
    return any(unicodedata.category(c) == "Cc" and c not in allowed for c in text)


# --- shipping address --------------------------------------------------------------------------

ADDRESS_FIELDS = ("name", "phone", "line1", "line2", "city", "region", "postal_code", "country")
ADDRESS_REQUIRED = ("name", "phone", "line1", "city")
ADDRESS_MAX_CHARS = {
    "name": 50,
    "phone": 24,
    "line1": 120,
    "line2": 120,
    "city": 50,
    "region": 50,
    "postal_code": 10,
    "country": 2,
}
_PHONE_CHARS = set("0123456789+-() ")
_POSTAL_CHARS = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz -")


def validate_address(fields: Mapping[str, str]) -> dict[str, str]:
    """The address with fields trimmed, or INVALID_ARGUMENT listing every problem at once.

    ``country`` may be empty: the servicer then keeps the order's current country.
    """
    addr = {name: str(fields.get(name, "") or "").strip() for name in ADDRESS_FIELDS}
    problems: list[str] = []
    for name in ADDRESS_REQUIRED:
        if not addr[name]:
            problems.append(f"{name} is required")
    for name, value in addr.items():
        if len(value) > ADDRESS_MAX_CHARS[name]:
            problems.append(f"{name} is longer than {ADDRESS_MAX_CHARS[name]} characters")
        elif _has_control_chars(value):
            problems.append(f"{name} contains control characters")
    phone = addr["phone"]
    if phone and (set(phone) - _PHONE_CHARS or not 6 <= sum(c.isdigit() for c in phone) <= 15):
        problems.append("phone must be 6-15 digits (spaces, +, -, parentheses allowed)")
    postal = addr["postal_code"]
    if postal and (set(postal) - _POSTAL_CHARS or len(postal) < 3):
        problems.append("postal_code must be 3-10 letters, digits, spaces or '-'")
    country = addr["country"]
    if country:
        addr["country"] = country = country.upper()
        if len(country) != 2 or not country.isascii() or not country.isalpha():
            problems.append("country must be an ISO 3166-1 alpha-2 code such as CN or US")
    if problems:
        raise invalid(
            "invalid_address",
            "the shipping address is not valid: "
            + "; ".join(problems)
            + ". Correct these fields and send the address again.",
        )
    return addr


# --- cancellation ------------------------------------------------------------------------------

_NOT_CANCELLABLE = {
    "shipped": ("order_shipped", "order {id} has shipped; it can no longer be cancelled"),
    "delivered": (
        "order_delivered",
        "order {id} has been delivered; it can no longer be cancelled, but it can be returned "
        f"within {RETURN_WINDOW_DAYS} days of delivery",
    ),
    "cancelled": ("already_cancelled", "order {id} is already cancelled"),
    "returned": ("order_returned", "order {id} has been returned; it can no longer be cancelled"),
}


def check_cancellable(order_id: str, status: str) -> None:
    if status in CANCELLABLE_STATUSES:
        return
    reason, text = _NOT_CANCELLABLE.get(
        status, ("invalid_state", "order {id} is in state '" + status + "' and cannot be cancelled")
    )
    raise refused(reason, text.format(id=order_id))


def cancellation_fee_cents(
    status: str, total_cents: int, paid_at: datetime | None, now: datetime
) -> int:
    """The fee for cancelling an order now; only meaningful for CANCELLABLE_STATUSES."""
    if status == "pending" or paid_at is None:
        return 0
    if now - paid_at <= timedelta(hours=FREE_CANCELLATION_HOURS):
        return 0
    return min(CANCELLATION_FEE_CAP_CENTS, total_cents * CANCELLATION_FEE_PERCENT // 100)


@dataclass(frozen=True)
class CancellationPlan:
    """What cancelling changes: the fee, and the refund of a paid order."""

    fee_cents: int
    refund: dict[str, Any]


def plan_cancellation(order: Mapping[str, Any], now: datetime) -> CancellationPlan:
    """Check the order can be cancelled now and work out fee and refund (raises OrderRuleError)."""
    order_id = str(order["_id"])
    status = str(order.get("status", ""))
    check_cancellable(order_id, status)
    total = int(order.get("total_cents", 0))
    paid_at = order.get("paid_at")
    fee = cancellation_fee_cents(status, total, paid_at, now)
    if status == "paid":
        refund = {
            "status": "pending",
            "amount_cents": total - fee,
            "requested_at": now,
            "completed_at": None,
        }
    else:
        refund = {"status": "none", "amount_cents": 0, "requested_at": None, "completed_at": None}
    return CancellationPlan(fee_cents=fee, refund=refund)


# --- shipping address change -------------------------------------------------------------------

_ADDRESS_LOCKED = {
    "shipped": (
        "order_shipped",
        "order {id} has shipped; its shipping address can no longer be "
        "changed (the carrier may be able to redirect it)",
    ),
    "delivered": (
        "order_delivered",
        "order {id} has been delivered; its shipping address can no longer be changed",
    ),
    "cancelled": (
        "order_cancelled",
        "order {id} is cancelled; its shipping address cannot be changed",
    ),
    "returned": (
        "order_returned",
        "order {id} has been returned; its shipping address cannot be changed",
    ),
}


def check_address_changeable(order_id: str, status: str) -> None:
    if status in ADDRESS_CHANGE_STATUSES:
        return
    reason, text = _ADDRESS_LOCKED.get(
        status, ("invalid_state", "order {id} is in state '" + status + "'; its address is locked")
    )
    raise refused(reason, text.format(id=order_id))


# --- returns -----------------------------------------------------------------------------------


def return_deadline_for(delivered_at: datetime) -> datetime:
    return delivered_at + timedelta(days=RETURN_WINDOW_DAYS)


def return_id_for(order_id: str) -> str:
    # One return per order (RETURN_POLICY), so the id follows from the order and a retried
    # CreateReturn finds the same return instead of opening a second one.
    return f"R{order_id}"


def order_product_ids(items: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(item["product_id"]) for item in items]


def refund_amount_cents(items: Iterable[Mapping[str, Any]], product_ids: Iterable[str]) -> int:
    wanted = set(product_ids)
    return sum(
        int(item["unit_price_cents"]) * int(item["quantity"])
        for item in items
        if item["product_id"] in wanted
    )


@dataclass(frozen=True)
class ReturnPlan:
    return_id: str
    product_ids: list[str]
    refund_cents: int


def plan_return(order: Mapping[str, Any], product_ids: Sequence[str], now: datetime) -> ReturnPlan:
    """Check a return of these items can be opened now (raises OrderRuleError).

    ``product_ids`` are already validated; empty means every item of the order.
    """
    order_id = str(order["_id"])
    status = str(order.get("status", ""))
    if status in ("pending", "paid"):
        raise refused(
            "not_shipped",
            f"order {order_id} has not shipped yet; cancel it instead of returning it",
        )
    if status == "shipped":
        raise refused(
            "not_delivered",
            f"order {order_id} is still on its way; a return can be requested once it is delivered",
        )
    if status == "cancelled":
        raise refused(
            "order_cancelled", f"order {order_id} is cancelled; there is nothing to return"
        )
    if status == "returned":
        raise refused("already_returned", f"order {order_id} has already been returned")
    if status != "delivered":
        raise refused(
            "invalid_state", f"order {order_id} is in state '{status}' and cannot be returned"
        )
    refund = order.get("refund") or {}
    if refund.get("status", "none") != "none":
        raise refused(
            "return_open",
            f"a return for order {order_id} is already open ({return_id_for(order_id)}); "
            "only one return per order is possible",
        )
    deadline = order.get("return_deadline")
    if deadline is None:
        delivered_at = (order.get("shipment") or {}).get("delivered_at")
        if delivered_at is None:
            raise refused(
                "no_delivery_date",
                f"order {order_id} has no delivery date on record; a person has to check the "
                "return",
            )
        deadline = return_deadline_for(delivered_at)
    if now > deadline:
        raise refused(
            "return_window_closed",
            f"the return window of order {order_id} closed on {deadline:%Y-%m-%d %H:%M} UTC "
            f"({RETURN_WINDOW_DAYS} days after delivery)",
        )
    items = list(order.get("items") or [])
    in_order = order_product_ids(items)
    chosen = list(product_ids) or in_order
    for pid in chosen:
        if pid not in in_order:
            raise invalid(
                "not_an_item",
                f"product {pid} is not an item of order {order_id}; its items are "
                + ", ".join(in_order),
            )
    return ReturnPlan(
        return_id=return_id_for(order_id),
        product_ids=chosen,
        refund_cents=refund_amount_cents(items, chosen),
    )


# --- deadlines ---------------------------------------------------------------------------------

DEFAULT_DB_TIMEOUT_S = 5.0
# Leave the servicer this much of the caller's deadline to build and send the answer.
DEADLINE_MARGIN_S = 0.005


def db_timeout_seconds(time_remaining: float | None) -> float | None:
    """The time budget for the database work of one call, from the gRPC deadline.

    None means the deadline has (practically) passed: answer DEADLINE_EXCEEDED without a query.
    Without a deadline (None or the huge value grpc reports) the work is still capped.
    """
    if time_remaining is None:
        return DEFAULT_DB_TIMEOUT_S
    budget = time_remaining - DEADLINE_MARGIN_S
    if budget <= 0:
        return None
    return min(budget, DEFAULT_DB_TIMEOUT_S)
