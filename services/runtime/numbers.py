"""Chinese numerals as shoppers write them: "两件", "一百块以内", "第三个"."""

from __future__ import annotations

ZH_DIGITS: dict[str, int] = {
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "俩": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
ZH_UNITS: dict[str, int] = {"十": 10, "百": 100, "千": 1000, "万": 10000}


def zh_number(text: str) -> float:
    """ "一百" → 100, "两千五百" → 2500, "十五" → 15, "120" → 120 (enough for prices and counts in
    a chat; "三百五" reads 305, not the colloquial 350)."""
    if text[:1].isdigit():
        return float(text)
    total = section = digit = 0
    for ch in text:
        if ch in ZH_DIGITS:
            digit = ZH_DIGITS[ch]
        elif ch == "万":
            total += (section + digit) * ZH_UNITS[ch]
            section = digit = 0
        elif ch in ZH_UNITS:
            section += (digit or 1) * ZH_UNITS[ch]
            digit = 0
        else:
            raise ValueError(f"not a Chinese numeral: {text!r}")
    return float(total + section + digit)
