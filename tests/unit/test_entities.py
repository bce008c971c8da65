from __future__ import annotations

import datetime as dt

import pytest

from services.nlu.entities import ProductMatcher, extract, find_dates, find_money

TODAY = dt.date(2026, 11, 29)  # a Sunday
CATALOG = [
    {"_id": "P10001", "name_en": "Silicone Phone Case", "name_zh": "硅胶手机壳"},
    {"_id": "P10002", "name_en": "Wireless Bluetooth Earphones", "name_zh": "无线蓝牙耳机"},
]


def kinds(text: str) -> dict[str, str]:
    return {e.type: e.value for e in extract(text, TODAY, ProductMatcher(CATALOG))}


def test_order_ids_are_ten_digits_only() -> None:
    assert kinds("order 7730192846 pls")["order_id"] == "7730192846"
    assert "order_id" not in kinds("call 13812345678")
    assert "order_id" not in kinds("ref 77301928461")


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [("paid ¥199.5", "199.50", "CNY"), ("花了100块", "100.00", "CNY"), ("$25.99 each", "25.99", "USD"),
     ("1,299 yuan", "1299.00", "CNY"), ("退我 50元", "50.00", "CNY"), ("20 euros", "20.00", "EUR")],
)  # fmt: skip
def test_money(text: str, value: str, unit: str) -> None:
    (money,) = find_money(text)
    assert (money.value, money.unit) == (value, unit)


@pytest.mark.parametrize(
    ("text", "iso"),
    [("yesterday", "2026-11-28"), ("昨天买的", "2026-11-28"), ("前天", "2026-11-27"),
     ("last Tuesday", "2026-11-24"), ("上周二", "2026-11-17"), ("3 days ago", "2026-11-26"),
     ("两天前", "2026-11-27"), ("11月20号", "2026-11-20"), ("Nov 20th", "2026-11-20"),
     ("2026-10-01", "2026-10-01"), ("12月25日前能到吗", "2026-12-25"), ("Feb 3", "2026-02-03")],
)  # fmt: skip
def test_dates(text: str, iso: str) -> None:
    (date,) = find_dates(text, TODAY)
    assert date.value == iso


def test_quantities_and_products_in_both_languages() -> None:
    assert kinds("I want 2 pcs of the phone case") == {"quantity": "2", "product": "P10001"}
    assert kinds("那个耳机 买两件") == {"product": "P10002", "quantity": "2"}


def test_pii_spans_become_entities() -> None:
    ents = extract("call 13812345678", TODAY, pii=[("phone", 5, 16)])
    assert [(e.type, e.value) for e in ents] == [("phone", "13812345678")]


def test_one_letter_of_a_contraction_names_no_product() -> None:
    # "size S" in a name made the "s" of "there's" (and the "t" of "didn't") name the T-shirt
    shirt = {"_id": "P9", "name_en": "Women's relaxed cotton T-shirt, size S", "name_zh": "T恤"}
    matcher = ProductMatcher([shirt])
    assert matcher.find("there's an order on my account I didn't make") == []
    assert [e.value for e in matcher.find("where is my t-shirt")] == ["P9"]


def test_chinese_head_noun_comes_before_the_variant_and_the_size() -> None:
    # the last characters of "加厚防滑瑜伽垫 8mm" were "mm", found inside "recommend"; those of
    # "…手机壳（黑色）" were "色）", so "我的手机壳" named no product
    mat = {"_id": "P1", "name_en": "Extra-thick yoga mat, 8 mm", "name_zh": "加厚防滑瑜伽垫 8mm"}
    case = {
        "_id": "P2",
        "name_en": "Bumper case for iPhone 15, black",
        "name_zh": "四角防摔手机壳（黑色）",
    }
    book = {"_id": "P3", "name_en": "Water Margin", "name_zh": "《水浒传》"}
    matcher = ProductMatcher([mat, case, book])
    assert matcher.find("can you recommend a good phone case?")[0].value == "P2"
    assert [e.value for e in matcher.find("can you recommend something?")] == []
    assert [e.value for e in matcher.find("我的手机壳到哪了")] == ["P2"]
    assert [e.value for e in matcher.find("瑜伽垫什么时候发货")] == ["P1"]
    assert [e.value for e in matcher.find("水浒传到了吗")] == ["P3"]


def test_a_product_span_covers_the_name_as_written() -> None:
    boards = {
        "_id": "P1",
        "name_en": "Bamboo chopping boards, set of 2",
        "name_zh": "竹制砧板两件套",
    }
    case = {"_id": "P2", "name_en": "Silicone Phone Case", "name_zh": "硅胶手机壳（黑色）"}
    matcher = ProductMatcher([boards, case])
    text = "is the Bamboo cutting board in stock?"
    (board,) = matcher.find(text)
    # one word of the shopper's own between name words; the original case kept
    assert board.text == "Bamboo cutting board" == text[board.start : board.end]
    (phone_case,) = matcher.find("我的硅胶手机壳坏了")
    assert phone_case.text == "硅胶手机壳" and (phone_case.start, phone_case.end) == (2, 7)


def test_a_chinese_pack_size_or_packaging_is_no_head_noun() -> None:
    knives = {
        "_id": "P1",
        "name_en": "Stainless steel knife set, 7 pieces",
        "name_zh": "不锈钢刀具七件套",
    }
    candles = {"_id": "P2", "name_en": "Scented candle gift box", "name_zh": "香薰蜡烛礼盒"}
    tea = {"_id": "P3", "name_en": "Da Hong Pao rock tea gift box", "name_zh": "武夷山大红袍礼盒"}
    matcher = ProductMatcher([knives, candles, tea])
    assert [e.value for e in matcher.find("刀具收到就坏了")] == ["P1"]
    assert [e.value for e in matcher.find("蜡烛什么时候发货")] == ["P2"]
    # "礼盒" alone names none of the gift boxes, "件套" none of the sets
    assert matcher.find("礼盒什么时候到") == [] and matcher.find("我买的五件套") == []
