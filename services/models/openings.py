"""Greetings in front of a request: "你好，在吗？我想问下订单7730192846到哪了" is a tracking request.

Shoppers open with "亲，在吗" or "hi, hope you're well" and ask in the same message. The intent
model reads the whole message, and a long enough opening wins: that message read as greeting
0.53 (track_order 0.43), and reply greeted the customer instead of tracking the order. A message
read as small talk, or read unsure ("hello! I'd like to return an item please": get_refund 0.41),
whose opening can be cut off is read again without it; the second reading is kept when it is a
confident request (not small talk, not out of scope) surer than the first.

Only openings are cut, never the request itself: what is left must still say something.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

SMALL_TALK = frozenset({"greeting", "thanks", "goodbye"})
OUT_OF_SCOPE = "out_of_scope"
MIN_REREAD_CONFIDENCE = 0.5

_SEP = r"[\s,，。.!！?？~～、…:：;；]"
# One opening clause. Most Chinese ones may run into the request without a separator ("亲我的
# 快递呢"); bare "客服" / "老板" only before one ("客服电话是多少" asks for the number).
_ZH_OPENING = (
    r"(?:亲爱的|亲亲|亲(?![子手自戚人友密身眼测口切])|你好呀|你好啊|你好|您好|哈喽|嗨|在吗|在不在|有人吗|"
    r"有人在吗|(?:客服|老板)(?:你好|您好|在吗|小姐姐|小哥哥)|掌柜的|早上好|上午好|中午好|下午好|晚上好|"
    r"打扰(?:一下|了)|不好意思(?:打扰(?:一下|了))?|麻烦问一下)"
)
_ZH_OPENING_ALONE = r"(?:客服|老板|掌柜)"
_EN_OPENING = (
    r"(?:(?:hi|hello|hey)\s+there|hiya|hi|hello|hey|yo|greetings|good\s+(?:morning|afternoon|evening|day)|"
    r"excuse\s+me|sorry\s+to\s+bother\s+you|"
    r"(?:i\s+)?hope\s+(?:you'?re|you\s+are)\s+(?:well|doing\s+well|having\s+a\s+good\s+day)|"
    r"(?:is\s+)?any\s*one\s+there|are\s+you\s+there|anybody\s+(?:there|home))\b"
)
_OPENINGS = re.compile(
    rf"^(?:\s*(?:{_ZH_OPENING}(?:{_SEP}+|(?=[\u4e00-\u9fff])|$)|{_ZH_OPENING_ALONE}{_SEP}+"
    rf"|{_EN_OPENING}{_SEP}*))+",
    re.IGNORECASE,
)
_CONTENT = re.compile(r"[\w\u4e00-\u9fff]")

P = TypeVar("P")


def without_opening(text: str) -> str:
    """``text`` without its leading greetings, or "" when it has none or nothing else."""
    m = _OPENINGS.match(text)
    if m is None or m.end() == 0:
        return ""
    rest = text[m.end() :].strip()
    return rest if len(_CONTENT.findall(rest)) >= 2 else ""


def reread_openings(
    texts: Sequence[str], predictions: Sequence[P], predict: Callable[[list[str]], Sequence[P]]
) -> list[P]:
    """``predictions`` with every small-talk or unsure reading of a message that opens with a
    greeting replaced by the reading of the rest, when that is a surer, confident request.
    ``predict`` reads a list of texts (one more encoder pass, only for those messages)."""
    out = list(predictions)
    redo = [
        (i, rest)
        for i, (text, p) in enumerate(zip(texts, predictions, strict=True))
        if (_intent(p) in SMALL_TALK or _confidence(p) < MIN_REREAD_CONFIDENCE)
        and (rest := without_opening(text))
    ]
    if not redo:
        return out
    again = predict([rest for _, rest in redo])
    for (i, _), p in zip(redo, again, strict=True):
        if (
            _intent(p) not in SMALL_TALK
            and not getattr(p, "out_of_scope", False)
            and _intent(p) != OUT_OF_SCOPE
            and _confidence(p) >= MIN_REREAD_CONFIDENCE
            and _confidence(p) > _confidence(out[i])
        ):
            out[i] = p
    return out


def _confidence(p: Any) -> float:
    return float(getattr(p, "confidence", 0.0))


def _intent(p: Any) -> str:
    return str(getattr(p, "intent", ""))
