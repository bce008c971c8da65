"""Reading short answers: yes / no, which order, which item, a new address."""

from __future__ import annotations

import re

import pytest

from services.reply.followups import (
    address_text,
    by_status,
    ordinal,
    parse_address,
    parse_contact,
    pick_choice,
    pick_items,
    yes_or_no,
)
from services.reply.state import OrderChoice

CHOICES = [
    OrderChoice("7730192846", "shipped", ["Silicone Phone Case"], ["硅胶手机壳"], ["P10001"]),
    OrderChoice("7730192812", "paid", ["Wireless Earbuds"], ["无线蓝牙耳机"], ["P10002"]),
    OrderChoice(
        "7730192857",
        "delivered",
        ["Ceramic Mug", "Phone Stand"],
        ["陶瓷马克杯", "手机支架"],
        ["P10003", "P10004"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("Yes please", True),
        ("ok", True),
        ("sure, go ahead", True),
        ("好的", True),
        ("👍", True),
        ("👌🏻", True),
        ("👎", False),
        ("🙅‍♀️", False),
        ("😀", None),
        ("好", True),
        ("确认", True),
        ("是的，取消吧", True),
        ("嗯嗯", True),
        ("no", False),
        ("no thanks", False),
        ("don't", False),
        ("不用了", False),
        ("不取消", False),
        ("不可以", False),
        ("算了吧", False),
        ("never mind", False),
        ("我要查物流", None),
        ("I don't want to cancel it", False),
        ("actually no", False),
        ("哦不用了，谢谢", False),
        ("那算了吧", False),
        # a "no" inside a sentence is no refusal
        ("the left one has no sound", None),
        ("it is the one with no case", None),
        ("耳机的音质还可以就是续航不好", None),
        ("what is the fee?", None),
        ("这是什么", None),
        ("hello there how are you doing today, I wanted to ask something", None),
    ],
)
def test_yes_or_no(text: str, expected: bool | None) -> None:
    assert yes_or_no(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the second one", 2),
        ("2", 2),
        ("#3", 3),
        ("number 1", 1),
        ("the first", 1),
        ("the last one", -1),
        ("第二个", 2),
        ("第3个", 3),
        ("第一笔订单", 1),
        ("最后一个", -1),
        ("最近的那个", 1),
        ("two", 2),
        ("the phone case", None),
        ("那个耳机的", None),
        ("I ordered it last week", None),
        ("first time ordering here", None),
    ],
)
def test_ordinal(text: str, expected: int | None) -> None:
    assert ordinal(text) == expected


def test_pick_choice_by_position_name_product_and_id() -> None:
    assert pick_choice("the second one", CHOICES) is CHOICES[1]
    assert pick_choice("第二个", CHOICES) is CHOICES[1]
    assert pick_choice("the last one", CHOICES) is CHOICES[2]
    assert pick_choice("the phone case", CHOICES) is CHOICES[0]
    assert pick_choice("那个耳机的", CHOICES) is CHOICES[1]
    assert pick_choice("the mug", CHOICES) is CHOICES[2]
    assert pick_choice("that one", CHOICES, product_ids=["P10004"]) is CHOICES[2]
    assert pick_choice("7730192846", CHOICES, order_ids=["7730192846"]) is CHOICES[0]
    # an id that was not offered is passed on (looked up scoped to the user)
    assert pick_choice("1234567890", CHOICES, order_ids=["1234567890"]) == "1234567890"
    assert pick_choice("the sixth one", CHOICES) is None
    assert pick_choice("no idea", CHOICES) is None


def test_pick_choice_by_the_word_shoppers_use_for_the_item() -> None:
    headset = OrderChoice("7730192899", "paid", ["Gaming Headset, black"], ["游戏耳机"], ["P1"])
    choices = [*CHOICES, headset]
    assert pick_choice("the headphones", [CHOICES[0], headset]) is headset
    assert pick_choice("my phone cover", CHOICES) is CHOICES[0]
    assert pick_choice("那个手机套", CHOICES) is CHOICES[0]
    # numbers and units in a name are no reference: "12 High Street" is not "a box of 12"
    cakes = OrderChoice("7730192801", "pending", ["Pineapple cakes, gift box of 12"], [], ["P2"])
    assert pick_choice("new address is 12 High Street, Manchester", [cakes, headset]) is None
    # a literal match wins over one through a synonym
    assert pick_choice("the earbuds", choices) is CHOICES[1]
    # two items only reached through synonyms tie: ask rather than guess
    assert pick_choice("the headphones", choices) is None


def test_words_about_any_order_name_no_product() -> None:
    watch = OrderChoice(
        "5520481106", "pending", ["Smart watch GT with heart-rate and SpO2 tracking"], [], ["P3"]
    )
    # "tracking" picked the watch, and the bot answered about an unpaid order
    assert pick_choice("tracking says delivered but nothing arrived", [*CHOICES, watch]) is None
    assert pick_choice("the smart watch", [*CHOICES, watch]) is watch


def test_one_letter_of_a_contraction_names_no_product() -> None:
    shirt = OrderChoice("5520481139", "shipped", ["Women's relaxed cotton T-shirt, size S"], [], [])
    # the "t" of "hasn't" picked the T-shirt order
    assert pick_choice("my parcel still hasn't arrived", [*CHOICES, shirt]) is None
    assert pick_choice("the t-shirt", [*CHOICES, shirt]) is shirt


def test_a_word_every_offered_order_shares_picks_none_of_them() -> None:
    cases = [
        OrderChoice("1", "paid", ["Shockproof bumper case for iPhone 15, black"], [], ["P1"]),
        OrderChoice(
            "2",
            "shipped",
            ["Vegan leather case for Huawei Mate 60 Pro", "Kickstand case"],
            [],
            ["P2", "P3"],
        ),
        OrderChoice("3", "delivered", ["Carbon-fibre case for OPPO Find X7"], [], ["P4"]),
    ]
    assert pick_choice("I ordered a phone case last week", cases) is None
    assert pick_choice("the huawei one", cases) is cases[1]
    assert pick_choice("the last one", cases) is cases[2]
    assert pick_choice("the leather case", cases) is cases[1]


def test_chinese_references_by_head_noun_after_a_set_count_and_one_character_nouns() -> None:
    knives = OrderChoice("1", "delivered", [], ["不锈钢刀具七件套"], ["a"])
    dishes = OrderChoice("2", "delivered", [], ["陶瓷餐具 16 件套"], ["b"])
    wok = OrderChoice("3", "delivered", [], ["不粘炒锅 32cm"], ["c"])
    fryer = OrderChoice("4", "delivered", [], ["可视窗空气炸锅 5.5L"], ["d"])
    cover = OrderChoice("5", "paid", [], ["硅胶手机套"], ["e"])
    assert pick_choice("那套刀具", [knives, dishes, wok]) is knives
    assert pick_choice("碗那个", [knives, dishes, wok]) is dishes
    assert pick_choice("锅", [knives, dishes, wok]) is wok
    assert pick_choice("那个锅", [wok, fryer]) is None  # two pots: ask
    assert pick_choice("包裹到了吗", [knives, dishes, wok]) is None
    assert pick_choice("我手机号改了", [cover, knives]) is None  # "套" alone is the noun
    # a word of the name before "那个" / "订单", away from the head noun
    panda = OrderChoice("6", "shipped", [], ["大熊猫毛绒公仔 40cm"], ["f"])
    assert pick_choice("查一下熊猫那个订单", [cover, panda, knives]) is panda
    assert pick_choice("帮我查一下那个订单", [cover, panda, knives]) is None


def test_pick_choice_does_not_guess_between_two_orders_of_the_same_product() -> None:
    twins = [
        CHOICES[0],
        OrderChoice("7730190000", "paid", ["Silicone Phone Case"], ["硅胶手机壳"], ["P10001"]),
    ]
    assert pick_choice("the phone case", twins) is None


def test_pick_items() -> None:
    items = [
        OrderChoice(
            "P10003", names_en=["Ceramic Mug"], names_zh=["陶瓷马克杯"], product_ids=["P10003"]
        ),
        OrderChoice(
            "P10004", names_en=["Phone Stand"], names_zh=["手机支架"], product_ids=["P10004"]
        ),
    ]
    assert pick_items("all of them", items) == items
    assert pick_items("全部", items) == items
    assert pick_items("the stand", items) == [items[1]]
    assert pick_items("马克杯", items) == [items[0]]
    assert pick_items("2", items) == [items[1]]
    assert pick_items("what?", items) is None


@pytest.mark.parametrize(
    ("text", "city", "postal"),
    [
        ("广东省深圳市南山区科技园路1号", "深圳市", None),
        ("改到上海市浦东新区世纪大道100号", "上海市", None),
        ("12 High Street, Springfield, 12345", "Springfield", "12345"),
        ("new address: 55 Baker St, London NW1 6XE", "London", "NW1 6XE"),
        # the request in front of the address is not part of it
        ("改地址，改成上海市浦东新区张江路100号", "上海市", None),
        ("麻烦把7730192846的地址换成北京市朝阳区建国路88号", "北京市", None),
        ("please change my address to 221B Baker Street, London NW1 6XE", "London", "NW1 6XE"),
        ("I moved, new address is 12 High Street, Manchester M1 1AA", "Manchester", "M1 1AA"),
        ("change my address, 5 Elm Road, Leeds, LS1 4AB", "Leeds", "LS1 4AB"),
        ("can you ship it to 9 Elm Road, Leeds, LS1 4AB", "Leeds", "LS1 4AB"),
        # the order id is taken out first: "on   to" was kept in the address
        ("change the address on   to 18 Orchard Road, Singapore 238841", "Singapore", "238841"),
    ],
)
def test_parse_address(text: str, city: str, postal: str | None) -> None:
    address = parse_address(text, "en")
    assert address is not None
    assert address["city"] == city and address.get("postal_code") == postal
    assert not address["line1"].lower().startswith(("on ", "to ")), address
    shown = address_text(address)
    assert address["line1"] and not re.search(r"改|换|address|moved|ship it|please|^is ", shown), (
        shown
    )


@pytest.mark.parametrize(
    ("text", "line1", "name", "phone"),
    [
        (
            "上海市浦东新区张江路100号 李雷 13800138000",
            "上海市浦东新区张江路100号",
            "李雷",
            "13800138000",
        ),
        (
            "广州市天河区天河路385号 太古汇 收件人小王 13711112222",
            "广州市天河区天河路385号 太古汇",
            "小王",
            "13711112222",
        ),
        (
            "收货人：张三，电话13912345678，地址：杭州市西湖区文三路1号",
            "杭州市西湖区文三路1号",
            "张三",
            "13912345678",
        ),
        ("北京市朝阳区建国路88号", "北京市朝阳区建国路88号", None, None),
    ],
)
def test_the_recipient_and_phone_in_a_chinese_address_are_their_own_fields(
    text: str, line1: str, name: str | None, phone: str | None
) -> None:
    address = parse_address(text, "zh")
    assert address is not None
    assert address["line1"] == line1
    assert address.get("name") == name and address.get("phone") == phone


@pytest.mark.parametrize("text", ["hello there", "yes", "我要改地址", "what is my address?"])
def test_not_an_address(text: str) -> None:
    assert parse_address(text, "en") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("改成13711112222", {"phone": "13711112222"}),
        ("收货人：李雷 13912345678", {"phone": "13912345678", "name": "李雷"}),
        ("new number is +44 7700 900123", {"phone": "+447700900123"}),
        ("收货人电话写错了 13711112222", {"phone": "13711112222"}),
        ("my number changed", None),
        ("改成1391234", None),  # too short for a phone number
    ],
)
def test_a_new_recipient_phone_is_read_from_a_message(
    text: str, expected: dict[str, str] | None
) -> None:
    assert parse_contact(text) == expected


@pytest.mark.parametrize(
    ("text", "status"),
    [("没付款那个", "pending"), ("the pending one", "pending"), ("已发货那单", "shipped")],
)
def test_an_order_picked_by_its_state_with_a_demonstrative(text: str, status: str) -> None:
    choices = [
        OrderChoice("1", status="pending"),
        OrderChoice("2", status="paid"),
        OrderChoice("3", status="shipped"),
    ]
    picked = by_status(text, choices)
    assert picked is not None and picked.status == status


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("那取消吧", True),
        ("那就改吧", True),
        ("那好吧", True),
        ("那是什么", None),
        ("那可以吗", None),
    ],
)
def test_a_lead_in_before_a_chinese_yes(text: str, answer: bool | None) -> None:
    # "那取消吧" to "确认要取消…吗？" was asked again
    assert yes_or_no(text) is answer


@pytest.mark.parametrize("text", ["对了 退货运费谁出啊", "好的 那要几天", "可以吗"])
def test_a_question_after_a_chinese_yes_word_is_no_yes(text: str) -> None:
    assert yes_or_no(text) is not True


def test_a_pause_word_before_a_question_is_no_answer() -> None:
    assert yes_or_no("wait, is there a fee?") is None
    assert yes_or_no("hold on, how long does the refund take?") is None
    assert yes_or_no("wait") is False
    assert yes_or_no("no wait, keep it") is False
