"""Traditional Chinese is read as simplified by the models and rules; other text is untouched."""

from __future__ import annotations

from services.models.datasets import parse_labelled_csv
from services.runtime.script import to_simplified


def test_traditional_characters_become_simplified() -> None:
    assert to_simplified("我嘅訂單幾時到") == "我嘅订单几时到"
    assert to_simplified("發票怎麼開？") == "发票怎么开？"
    assert to_simplified("請問訂單7730192846到咗未") == "请问订单7730192846到咗未"


def test_simplified_and_other_text_are_unchanged() -> None:
    for text in ("我的订单到哪了", "where is my order 7730192846?", "😡😡", "", "address要改下"):
        assert to_simplified(text) == text


def test_training_and_evaluation_data_are_read_in_simplified_characters() -> None:
    data = parse_labelled_csv("text,label\n取消訂單,cancel_order\n取消订单,cancel_order\n".encode())
    assert data.texts == ["取消订单", "取消订单"]
