"""Chinese numerals (pure logic)."""

from __future__ import annotations

import pytest

from services.runtime.numbers import zh_number


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("一百", 100),
        ("一百五十", 150),
        ("两千五百", 2500),
        ("十五", 15),
        ("三万", 30000),
        ("120", 120),
        ("9.9", 9.9),
    ],
)
def test_zh_number(text: str, value: float) -> None:
    assert zh_number(text) == value


def test_not_a_numeral_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a Chinese numeral"):
        zh_number("一百块")
