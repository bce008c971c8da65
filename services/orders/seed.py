"""Deterministic, realistic demo data: products, users, orders in every state, returns, behaviour.

``build_dataset(now)`` is pure: the same ``now`` gives the same documents (fixed RNG seed), and
every date is relative to ``now`` so a fresh seed always has fresh orders (paid an hour ago,
shipping now, inside and outside the return window). ``seed(db)`` writes it idempotently.

The demo customers u1001 (王小明, Chinese) and u2001 (Emily Carter, English) have one order in
every scenario, with fixed order numbers (``DEMO_ORDER_IDS``) that sample conversations can use.
Interactions are consistent with the orders (views → cart → purchase at payment time) plus
browsing and abandoned carts biased to each customer's favourite categories, for the recommender.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database

from services.orders.catalog import CATEGORIES, catalog_products
from services.orders.repository import (
    INTERACTIONS,
    ORDER_LISTS,
    ORDERS,
    PRODUCTS,
    RETURNS,
    TRANSITIONS,
    USERS,
    ensure_indexes_sync,
    order_list_docs,
    register_orders,
)
from services.orders.rules import CURRENCY, return_deadline_for, return_id_for

RNG_SEED = 20240611
DEMO_USERS = ("u1001", "u2001")

# Every order scenario the demo and the tests rely on: status, refund and timeline differ.
SCENARIOS = (
    "pending",  # placed, not paid
    "paid_recent",  # paid < 24 h ago: free cancellation
    "paid_old",  # paid > 24 h ago, not shipped: cancellation fee applies
    "shipped",  # on its way, with carrier, tracking number and ETA
    "delivered_in_window",  # delivered < 7 days ago: returnable
    "delivered_out_window",  # delivered long ago: return window closed
    "return_open",  # delivered, return requested, refund pending
    "cancelled_unpaid",  # cancelled before payment: nothing to refund
    "cancelled_refund_pending",  # cancelled after payment, refund on its way
    "cancelled_refund_done",  # cancelled after payment, refunded
    "returned_refund_pending",  # goods back at the warehouse, refund on its way
    "returned_refund_done",  # goods back, refunded
)
SCENARIO_STATUS = {
    "pending": "pending",
    "paid_recent": "paid",
    "paid_old": "paid",
    "shipped": "shipped",
    "delivered_in_window": "delivered",
    "delivered_out_window": "delivered",
    "return_open": "delivered",
    "cancelled_unpaid": "cancelled",
    "cancelled_refund_pending": "cancelled",
    "cancelled_refund_done": "cancelled",
    "returned_refund_pending": "returned",
    "returned_refund_done": "returned",
}
# How often each scenario occurs for ordinary customers: mostly history, a few open orders.
SCENARIO_WEIGHTS = {
    "pending": 4,
    "paid_recent": 4,
    "paid_old": 2,
    "shipped": 8,
    "delivered_in_window": 8,
    "delivered_out_window": 40,
    "return_open": 3,
    "cancelled_unpaid": 5,
    "cancelled_refund_pending": 2,
    "cancelled_refund_done": 5,
    "returned_refund_pending": 2,
    "returned_refund_done": 5,
}

DEMO_ORDER_IDS: dict[str, dict[str, str]] = {
    "u1001": {
        "pending": "7730192801",
        "paid_recent": "7730192812",
        "paid_old": "7730192823",
        "shipped": "7730192846",
        "delivered_in_window": "7730192857",
        "delivered_out_window": "7730192868",
        "return_open": "7730192879",
        "cancelled_unpaid": "7730192880",
        "cancelled_refund_pending": "7730192891",
        "cancelled_refund_done": "7730192902",
        "returned_refund_pending": "7730192913",
        "returned_refund_done": "7730192924",
    },
    "u2001": {
        "pending": "5520481106",
        "paid_recent": "5520481117",
        "paid_old": "5520481128",
        "shipped": "5520481139",
        "delivered_in_window": "5520481140",
        "delivered_out_window": "5520481151",
        "return_open": "5520481162",
        "cancelled_unpaid": "5520481173",
        "cancelled_refund_pending": "5520481184",
        "cancelled_refund_done": "5520481195",
        "returned_refund_pending": "5520481206",
        "returned_refund_done": "5520481217",
    },
}
DEMO_FAVOURITES = {
    "u1001": ("earphones", "phone-cases", "snacks"),
    "u2001": ("books", "kitchen", "tea-coffee"),
}

# (user id, name, email local part)
ZH_USERS = (
    ("u1001", "王小明", "wang.xiaoming"),
    ("u1002", "李娜", "li.na"),
    ("u1003", "张伟", "zhang.wei"),
    ("u1004", "刘洋", "liu.yang"),
    ("u1005", "陈静", "chen.jing"),
    ("u1006", "杨帆", "yang.fan"),
    ("u1007", "赵磊", "zhao.lei"),
    ("u1008", "黄丽", "huang.li"),
    ("u1009", "周婷", "zhou.ting"),
    ("u1010", "吴芳", "wu.fang"),
    ("u1011", "徐强", "xu.qiang"),
    ("u1012", "孙悦", "sun.yue"),
    ("u1013", "马超", "ma.chao"),
    ("u1014", "朱晓燕", "zhu.xiaoyan"),
    ("u1015", "胡斌", "hu.bin"),
    ("u1016", "郭敏", "guo.min"),
    ("u1017", "何俊", "he.jun"),
    ("u1018", "林晓", "lin.xiao"),
)
EN_USERS = (
    ("u2001", "Emily Carter", "emily.carter"),
    ("u2002", "James Wilson", "james.wilson"),
    ("u2003", "Sophie Martin", "sophie.martin"),
    ("u2004", "Daniel Brown", "daniel.brown"),
    ("u2005", "Olivia Chen", "olivia.chen"),
    ("u2006", "Lucas Meyer", "lucas.meyer"),
    ("u2007", "Hannah Lee", "hannah.lee"),
    ("u2008", "Ethan Walker", "ethan.walker"),
    ("u2009", "Grace Kim", "grace.kim"),
    ("u2010", "Noah Davies", "noah.davies"),
    ("u2011", "Chloe Taylor", "chloe.taylor"),
    ("u2012", "Ryan O'Connor", "ryan.oconnor"),
    ("u2013", "Mia Robinson", "mia.robinson"),
    ("u2014", "Arjun Patel", "arjun.patel"),
    ("u2015", "Isabella Rossi", "isabella.rossi"),
)

# (city, region, districts, postal prefix)
CN_CITIES_ZH = (
    ("上海市", "上海市", ("浦东新区", "徐汇区", "静安区", "闵行区"), "200"),
    ("北京市", "北京市", ("朝阳区", "海淀区", "东城区", "丰台区"), "100"),
    ("广州市", "广东省", ("天河区", "越秀区", "海珠区"), "510"),
    ("深圳市", "广东省", ("南山区", "福田区", "宝安区"), "518"),
    ("杭州市", "浙江省", ("西湖区", "滨江区", "拱墅区"), "310"),
    ("成都市", "四川省", ("武侯区", "锦江区", "高新区"), "610"),
    ("南京市", "江苏省", ("鼓楼区", "玄武区", "建邺区"), "210"),
    ("武汉市", "湖北省", ("洪山区", "江汉区", "武昌区"), "430"),
    ("西安市", "陕西省", ("雁塔区", "碑林区"), "710"),
)
ZH_STREETS = ("人民路", "中山路", "解放路", "建设路", "长江路", "科技园路", "文化路", "滨江大道")
# English speakers: some live in China (domestic carriers), some abroad (UPS/DHL).
EN_HOMES = (
    # (city, region, country, postal code, street names, phone format)
    (
        "Shanghai",
        "Shanghai",
        "CN",
        "200120",
        ("Century Avenue", "Huaihai Road", "Nanjing West Road"),
        "cn",
    ),
    (
        "Beijing",
        "Beijing",
        "CN",
        "100020",
        ("Jianguo Road", "Sanlitun Road", "Guanghua Road"),
        "cn",
    ),
    ("Shenzhen", "Guangdong", "CN", "518057", ("Keyuan Road", "Shennan Boulevard"), "cn"),
    ("Hong Kong", "Hong Kong Island", "HK", "", ("Queen's Road Central", "Hennessy Road"), "hk"),
    ("Singapore", "Singapore", "SG", "238859", ("Orchard Road", "Tanjong Pagar Road"), "sg"),
    ("London", "Greater London", "GB", "SW1A 2AA", ("Baker Street", "King's Road"), "gb"),
    ("New York", "NY", "US", "10001", ("West 34th Street", "Bleecker Street"), "us"),
    ("Sydney", "NSW", "AU", "2000", ("George Street", "Pitt Street"), "au"),
)
DOMESTIC_CARRIERS = (("顺丰", 45), ("京东", 30), ("中通", 25))
INTERNATIONAL_CARRIERS = (("UPS", 50), ("DHL", 50))
PAYMENT_METHODS = {
    "zh": ("alipay", "wechat_pay", "unionpay"),
    "en-cn": ("alipay", "wechat_pay", "visa", "mastercard"),
    "en-abroad": ("visa", "mastercard", "paypal"),
}
CANCEL_REASONS = ("不想要了", "拍错了", "地址填错了", "ordered by mistake", "found a better price")
RETURN_REASONS = ("尺码不合适", "颜色与图片不符", "质量问题", "doesn't fit", "not as described")


def _ms(value: datetime) -> datetime:
    """Truncated to milliseconds (what BSON keeps): equal again after a round trip."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


@dataclass
class Dataset:
    products: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    order_lists: list[dict[str, Any]] = field(default_factory=list)
    returns: list[dict[str, Any]] = field(default_factory=list)
    interactions: list[dict[str, Any]] = field(default_factory=list)

    def collections(self) -> dict[str, list[dict[str, Any]]]:
        return {
            PRODUCTS: self.products,
            USERS: self.users,
            ORDERS: self.orders,
            ORDER_LISTS: self.order_lists,
            RETURNS: self.returns,
            INTERACTIONS: self.interactions,
        }


class _Builder:
    def __init__(self, now: datetime) -> None:
        self.now = _ms(now)
        self.rng = random.Random(RNG_SEED)
        self.data = Dataset()
        self.invoice_seq = 0
        self.used_order_ids = {oid for ids in DEMO_ORDER_IDS.values() for oid in ids.values()}
        self.raw_interactions: list[dict[str, Any]] = []

    # --- helpers -------------------------------------------------------------------------------

    def hours_ago(self, low: float, high: float) -> datetime:
        return _ms(self.now - timedelta(hours=self.rng.uniform(low, high)))

    def after(self, start: datetime, low_h: float, high_h: float) -> datetime:
        """A time low..high hours after ``start``, never later than now."""
        return _ms(min(self.now, start + timedelta(hours=self.rng.uniform(low_h, high_h))))

    def weighted(self, options: Sequence[tuple[str, int]]) -> str:
        return self.rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(n))

    def new_order_id(self) -> str:
        while True:
            oid = str(self.rng.randrange(1_000_000_000, 10_000_000_000))
            if oid not in self.used_order_ids:
                self.used_order_ids.add(oid)
                return oid

    # --- catalog and customers -----------------------------------------------------------------

    def products(self) -> None:
        for doc in catalog_products():
            roll = self.rng.random()
            if roll < 0.08:
                stock = 0  # sold out: the recommender must not suggest these
            elif roll < 0.18:
                stock = self.rng.randint(1, 5)
            else:
                stock = self.rng.randint(10, 800)
            tags = list(doc["tags"])
            if self.rng.random() < 0.15:
                tags.append("bestseller")
            if self.rng.random() < 0.10:
                tags.append("new")
            self.data.products.append({**doc, "stock": stock, "tags": tags})

    def zh_address(self, name: str, phone: str) -> dict[str, str]:
        city, region, districts, postal = self.rng.choice(CN_CITIES_ZH)
        district = self.rng.choice(districts)
        return {
            "name": name,
            "phone": phone,
            "line1": f"{district}{self.rng.choice(ZH_STREETS)}{self.rng.randint(1, 999)}号",
            "line2": f"{self.rng.randint(1, 30)}栋{self.rng.randint(1, 6)}单元"
            f"{self.rng.randint(1, 32)}{self.rng.randint(1, 4):02d}室",
            "city": city,
            "region": region,
            "postal_code": postal + self.digits(3),
            "country": "CN",
        }

    def phone(self, kind: str) -> str:
        if kind == "cn":
            return (
                f"+86 1{self.rng.choice('35789')}{self.digits(1)} {self.digits(4)} {self.digits(4)}"
            )
        if kind == "hk":
            return f"+852 {self.rng.choice('569')}{self.digits(3)} {self.digits(4)}"
        if kind == "sg":
            return f"+65 {self.rng.choice('89')}{self.digits(3)} {self.digits(4)}"
        if kind == "gb":
            return f"+44 20 7946 0{self.digits(3)}"  # Ofcom's range reserved for fiction
        if kind == "us":
            return f"+1 212 555 01{self.digits(2)}"  # 555-01xx is reserved for fiction
        return f"+61 2 5550 {self.digits(4)}"  # Australian range reserved for fiction

    def users(self) -> None:
        for uid, name, local in ZH_USERS:
            phone = self.phone("cn")
            self.add_user(
                uid, name, "zh", phone, f"{local}@example.cn", self.zh_address(name, phone), "zh"
            )
        for index, (uid, name, local) in enumerate(EN_USERS):
            # the demo customer and every other one live in China; the rest abroad
            home = (
                EN_HOMES[0]
                if uid == "u2001"
                else self.rng.choice(EN_HOMES[:3] if index % 2 else EN_HOMES[3:])
            )
            city, region, country, postal, streets, phone_kind = home
            phone = self.phone(phone_kind)
            address = {
                "name": name,
                "phone": phone,
                "line1": f"{self.rng.randint(1, 400)} {self.rng.choice(streets)}",
                "line2": f"Apt {self.rng.randint(2, 40)}{self.rng.choice('ABCDEF')}",
                "city": city,
                "region": region,
                "postal_code": postal,
                "country": country,
            }
            payment = "en-cn" if country == "CN" else "en-abroad"
            self.add_user(uid, name, "en", phone, f"{local}@example.com", address, payment)

    def add_user(
        self,
        uid: str,
        name: str,
        language: str,
        phone: str,
        email: str,
        address: dict[str, str],
        payment_group: str,
    ) -> None:
        favourites = DEMO_FAVOURITES.get(uid) or tuple(
            self.rng.sample(sorted(CATEGORIES), self.rng.randint(2, 3))
        )
        self.data.users.append(
            {
                "_id": uid,
                "name": name,
                "language": language,
                "phone": phone,
                "email": email,
                "default_address": address,
                "favourite_categories": list(favourites),
                "preferred_payment_method": self.rng.choice(PAYMENT_METHODS[payment_group]),
                "payment_group": payment_group,
                "created_at": self.hours_ago(24 * 200, 24 * 900),
            }
        )

    # --- orders --------------------------------------------------------------------------------

    def pick_products(self, user: dict[str, Any], in_stock_only: bool) -> list[dict[str, Any]]:
        favourites = set(user["favourite_categories"])
        pool = [p for p in self.data.products if p["stock"] > 0 or not in_stock_only]
        liked = [p for p in pool if p["category"] in favourites]
        chosen: dict[str, dict[str, Any]] = {}
        for _ in range(int(self.weighted((("1", 60), ("2", 30), ("3", 10))))):
            source = liked if liked and self.rng.random() < 0.75 else pool
            product = self.rng.choice(source)
            chosen[product["_id"]] = product
        return list(chosen.values())

    def order(self, user: dict[str, Any], scenario: str, order_id: str) -> None:
        rng, now = self.rng, self.now
        status = SCENARIO_STATUS[scenario]
        open_order = scenario in ("pending", "paid_recent", "paid_old", "shipped")
        items = [
            {
                "product_id": p["_id"],
                "name_zh": p["name_zh"],
                "name_en": p["name_en"],
                "quantity": int(self.weighted((("1", 80), ("2", 15), ("3", 5)))),
                "unit_price_cents": p["price_cents"],
            }
            for p in self.pick_products(user, in_stock_only=open_order)
        ]
        total = sum(i["quantity"] * i["unit_price_cents"] for i in items)
        address = dict(user["default_address"])
        domestic = address["country"] == "CN"

        paid_at: datetime | None = None
        shipped_at = delivered_at = cancelled_at = return_at = None
        if scenario == "pending":
            created = self.hours_ago(0.1, 30)
        elif scenario == "paid_recent":
            created = self.hours_ago(0.5, 20)
        elif scenario == "paid_old":
            created = self.hours_ago(27, 60)
        elif scenario == "shipped":
            created = self.hours_ago(30, 110)
        elif scenario == "cancelled_unpaid":
            created = self.hours_ago(24, 24 * 60)
            cancelled_at = self.after(created, 0.2, 20)
        elif scenario == "cancelled_refund_pending":
            created = self.hours_ago(5, 40)
        elif scenario == "cancelled_refund_done":
            created = self.hours_ago(24 * 5, 24 * 120)
        else:  # delivered or returned: work back from the delivery date
            delivered_ago = {
                "delivered_in_window": (8, 24 * 6),
                "delivered_out_window": (24 * 9, 24 * 160),
                "return_open": (24, 24 * 5),
                "returned_refund_pending": (24 * 5, 24 * 9),
                "returned_refund_done": (24 * 12, 24 * 150),
            }[scenario]
            delivered_at = self.hours_ago(*delivered_ago)
            shipped_at = _ms(
                delivered_at - timedelta(hours=rng.uniform(20, 100 if domestic else 200))
            )
            paid_at = _ms(shipped_at - timedelta(hours=rng.uniform(4, 30)))
            created = _ms(paid_at - timedelta(minutes=rng.uniform(1, 30)))
        if paid_at is None and scenario not in ("pending", "cancelled_unpaid"):
            paid_at = self.after(created, 1 / 60, 0.5)
        if scenario == "shipped":
            assert paid_at is not None
            shipped_at = self.after(paid_at, 4, 28)
        if scenario in ("cancelled_refund_pending", "cancelled_refund_done"):
            assert paid_at is not None
            cancelled_at = self.after(paid_at, 0.3, 6)  # within 24 h: free, refund in full

        refund: dict[str, Any] = {
            "status": "none",
            "amount_cents": 0,
            "requested_at": None,
            "completed_at": None,
        }
        return_doc: dict[str, Any] | None = None
        returned_items = [i["product_id"] for i in items]
        if scenario == "cancelled_refund_pending" and cancelled_at:
            refund = {
                "status": "pending",
                "amount_cents": total,
                "requested_at": cancelled_at,
                "completed_at": None,
            }
        if scenario == "cancelled_refund_done" and cancelled_at:
            refund = {
                "status": "done",
                "amount_cents": total,
                "requested_at": cancelled_at,
                "completed_at": self.after(cancelled_at, 2, 72),
            }
        if scenario in ("return_open", "returned_refund_pending", "returned_refund_done"):
            assert delivered_at is not None
            if scenario == "return_open":
                returned_items = returned_items[:1]
                return_at = self.after(delivered_at, 2, 20)
            else:
                return_at = self.after(delivered_at, 24, 24 * 4)
            amount = sum(
                i["quantity"] * i["unit_price_cents"]
                for i in items
                if i["product_id"] in returned_items
            )
            done = scenario == "returned_refund_done"
            refund = {
                "status": "done" if done else "pending",
                "amount_cents": amount,
                "requested_at": return_at,
                "completed_at": self.after(return_at, 24 * 3, 24 * 7) if done else None,
            }
            return_doc = {
                "_id": return_id_for(order_id),
                "order_id": order_id,
                "user_id": user["_id"],
                "product_ids": returned_items,
                "reason": rng.choice(RETURN_REASONS),
                "status": {"return_open": "requested", "returned_refund_pending": "received"}.get(
                    scenario, "refunded"
                ),
                "refund_amount_cents": amount,
                "currency": CURRENCY,
                "created_at": return_at,
            }

        shipment = None
        if shipped_at is not None:
            carrier = self.weighted(DOMESTIC_CARRIERS if domestic else INTERNATIONAL_CARRIERS)
            days = rng.uniform(1.5, 4) if domestic else rng.uniform(5, 9)
            eta = _ms(shipped_at + timedelta(days=days))
            if delivered_at is None:  # still on its way: the promised date is ahead
                eta = max(eta, _ms(now + timedelta(hours=rng.uniform(4, 48))))
            shipment = {
                "carrier": carrier,
                "tracking_number": self.tracking_number(carrier),
                "shipped_at": shipped_at,
                "eta": eta,
                "delivered_at": delivered_at,
            }

        user_payment = user["preferred_payment_method"]
        payment_method = (
            user_payment
            if rng.random() < 0.7
            else rng.choice(PAYMENT_METHODS[user["payment_group"]])
        )
        invoice = ""
        if paid_at is not None:
            self.invoice_seq += 1
            invoice = f"INV{paid_at:%Y%m%d}{self.invoice_seq:06d}"
        doc: dict[str, Any] = {
            "_id": order_id,
            "user_id": user["_id"],
            "status": status,
            "items": items,
            "total_cents": total,
            "currency": CURRENCY,
            "shipping_address": address,
            "shipment": shipment,
            "created_at": created,
            "paid_at": paid_at,
            "return_deadline": return_deadline_for(delivered_at) if delivered_at else None,
            "refund": refund,
            "invoice_number": invoice,
            "payment_method": payment_method,
            "version": 0,
        }
        if cancelled_at is not None:
            doc.update(
                cancelled_at=cancelled_at,
                cancel_reason=rng.choice(CANCEL_REASONS),
                cancellation_fee_cents=0,
            )
        if return_doc is not None:
            doc["return_request"] = {
                "return_id": return_doc["_id"],
                "product_ids": return_doc["product_ids"],
                "reason": return_doc["reason"],
                "created_at": return_doc["created_at"],
            }
            self.data.returns.append(return_doc)
        self.data.orders.append(doc)
        self.order_interactions(user["_id"], items, created, paid_at)

    def tracking_number(self, carrier: str) -> str:
        if carrier == "顺丰":
            return "SF" + self.digits(13)
        if carrier == "京东":
            return "JDVA" + self.digits(11)
        if carrier == "中通":
            return "7" + self.digits(13)
        if carrier == "UPS":
            alnum = "ABCDEFGHJKLMNPRSTUVWXY0123456789"
            return "1Z" + "".join(self.rng.choice(alnum) for _ in range(6)) + "03" + self.digits(8)
        return self.digits(10)  # DHL Express waybill

    def orders(self) -> None:
        scenarios = list(SCENARIO_WEIGHTS)
        weights = [SCENARIO_WEIGHTS[s] for s in scenarios]
        for user in self.data.users:
            uid = user["_id"]
            if uid in DEMO_ORDER_IDS:
                for scenario in SCENARIOS:
                    self.order(user, scenario, DEMO_ORDER_IDS[uid][scenario])
                extra = ["delivered_out_window"] * 3 + ["delivered_in_window"]
            else:
                extra = self.rng.choices(scenarios, weights=weights, k=self.rng.randint(7, 12))
            for scenario in extra:
                self.order(user, scenario, self.new_order_id())

    # --- behaviour -----------------------------------------------------------------------------

    def interaction(
        self, user_id: str, product_id: str, kind: str, at: datetime, qty: int = 1
    ) -> None:
        self.raw_interactions.append(
            {"user_id": user_id, "product_id": product_id, "kind": kind, "quantity": qty, "at": at}
        )

    def order_interactions(
        self, user_id: str, items: list[dict[str, Any]], created: datetime, paid_at: datetime | None
    ) -> None:
        for item in items:
            pid = item["product_id"]
            for _ in range(self.rng.randint(1, 3)):
                at = _ms(created - timedelta(hours=self.rng.uniform(0.5, 72)))
                self.interaction(user_id, pid, "view", at)
            if self.rng.random() < 0.85:
                at = _ms(created - timedelta(minutes=self.rng.uniform(2, 60)))
                self.interaction(user_id, pid, "cart", at, item["quantity"])
            if paid_at is not None:
                self.interaction(user_id, pid, "purchase", paid_at, item["quantity"])

    def browsing(self) -> None:
        products = self.data.products
        for user in self.data.users:
            favourites = set(user["favourite_categories"])
            liked = [p for p in products if p["category"] in favourites]
            views = (
                self.rng.randint(70, 90) if user["_id"] in DEMO_USERS else self.rng.randint(25, 60)
            )
            for _ in range(views):
                product = self.rng.choice(liked if self.rng.random() < 0.75 else products)
                self.interaction(user["_id"], product["_id"], "view", self.hours_ago(0.05, 24 * 90))
            for _ in range(self.rng.randint(1, 4)):  # abandoned carts
                product = self.rng.choice(liked)
                at = self.hours_ago(1, 24 * 30)
                self.interaction(
                    user["_id"], product["_id"], "view", _ms(at - timedelta(minutes=5))
                )
                self.interaction(user["_id"], product["_id"], "cart", at)

    def finish_interactions(self) -> None:
        ordered = sorted(
            self.raw_interactions,
            key=lambda i: (i["at"], i["user_id"], i["product_id"], i["kind"]),
        )
        self.data.interactions = [{"_id": f"seed-{n:06d}", **i} for n, i in enumerate(ordered, 1)]

    def build(self) -> Dataset:
        self.products()
        self.users()
        self.orders()
        self.browsing()
        self.finish_interactions()
        self.data.order_lists = order_list_docs(self.data.orders)
        for user in self.data.users:  # builder-only fields
            user.pop("payment_group")
        return self.data


def build_dataset(now: datetime) -> Dataset:
    """The whole demo data set for this moment; pure and deterministic."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC), e.g. datetime.now(UTC)")
    return _Builder(now.astimezone(UTC)).build()


SEED_BATCH = 500


def seed(db: Database, reset: bool = True, now: datetime | None = None) -> dict[str, int]:
    """Write the demo data set; returns documents written per collection.

    ``reset=True`` empties products, users, orders (with their lists and change log), returns
    and interactions first (behaviour recorded since the last seed is dropped too), so the
    result is exactly the demo data. ``reset=False`` upserts by _id and keeps other documents.
    Either way running it again is safe, and the indexes are created.
    """
    data = build_dataset(now or datetime.now(UTC))
    ensure_indexes_sync(db)
    if reset:
        for name in (*data.collections(), TRANSITIONS):
            db[name].delete_many({})
    counts: dict[str, int] = {}
    for name, docs in data.collections().items():
        counts[name] = len(docs)
        if name == ORDER_LISTS and not reset:
            register_orders(db, data.orders)  # adds to the lists, keeps other orders in them
            continue
        for start in range(0, len(docs), SEED_BATCH):
            batch = docs[start : start + SEED_BATCH]
            if not reset:
                # Replace by _id: delete then insert, since one upsert per document takes ~6 ms
                # on FerretDB (half a minute for the data set) and this takes one scan per batch.
                db[name].delete_many({"_id": {"$in": [d["_id"] for d in batch]}})
            db[name].insert_many(batch, ordered=False)
    return counts
