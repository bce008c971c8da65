"""Entity extraction for shopper messages, zh and en.

Rules where rules are right: order ids, money, quantities and dates have shapes a pattern
captures exactly and explainably; products are matched against the catalog by name words.
Phone numbers and e-mail come from ingest's PII spans (detected once, at the edge).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from services.runtime.mongo import ORDER_ID_IN_TEXT_RE
from services.runtime.numbers import ZH_DIGITS


@dataclass(frozen=True)
class Entity:
    type: str
    text: str
    start: int
    end: int
    value: str
    unit: str = ""
    score: float = 1.0


# -- order ids ----------------------------------------------------------------------------------
# Order ids on this platform are 10 digits: services.runtime.mongo.ORDER_ID_IN_TEXT_RE.


def find_order_ids(text: str) -> list[Entity]:
    return [
        Entity("order_id", m.group(1), m.start(1), m.end(1), m.group(1))
        for m in ORDER_ID_IN_TEXT_RE.finditer(text)
    ]


# -- money -----------------------------------------------------------------------------------
_CURRENCY_WORDS = {
    "¥": "CNY", "￥": "CNY", "rmb": "CNY", "cny": "CNY", "元": "CNY", "块": "CNY", "块钱": "CNY",
    "人民币": "CNY", "yuan": "CNY", "$": "USD", "usd": "USD", "dollars": "USD", "dollar": "USD",
    "bucks": "USD", "美元": "USD", "美金": "USD", "€": "EUR", "eur": "EUR", "euro": "EUR",
    "euros": "EUR", "欧元": "EUR", "£": "GBP", "gbp": "GBP", "pounds": "GBP", "英镑": "GBP",
}  # fmt: skip
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_PREFIX = r"(¥|￥|\$|€|£|rmb|cny|usd|eur|gbp)"
_SUFFIX = (
    r"(块钱|人民币|美元|美金|欧元|英镑|元|块|rmb|cny|usd|eur|gbp|yuan|dollars?|bucks|euros?|pounds)"
)
_MONEY_PREFIX = re.compile(rf"{_PREFIX}\s?({_NUM})", re.IGNORECASE)
_MONEY_SUFFIX = re.compile(rf"(?<![\d.])({_NUM})\s?{_SUFFIX}(?![A-Za-z])", re.IGNORECASE)


def find_money(text: str) -> list[Entity]:
    found: list[Entity] = []
    for m in _MONEY_PREFIX.finditer(text):
        amount = float(m.group(2).replace(",", ""))
        found.append(
            Entity(
                "money",
                m.group(),
                m.start(),
                m.end(),
                f"{amount:.2f}",
                _CURRENCY_WORDS[m.group(1).lower()],
            )
        )
    for m in _MONEY_SUFFIX.finditer(text):
        if any(e.start <= m.start() < e.end for e in found):
            continue
        if len(m.group(1)) == 10 and m.group(1).isdigit():  # an order id followed by a word
            continue
        amount = float(m.group(1).replace(",", ""))
        found.append(
            Entity(
                "money",
                m.group(),
                m.start(),
                m.end(),
                f"{amount:.2f}",
                _CURRENCY_WORDS[m.group(2).lower()],
            )
        )
    return found


# -- quantities --------------------------------------------------------------------------------
_ZH_DIGITS = {**ZH_DIGITS, "十": 10}
_EN_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "a pair of": 2, "a couple of": 2,
}  # fmt: skip
_ZH_CLASSIFIERS = "个件双台条只瓶包盒套本支箱份张副把袋"
_QTY_ZH = re.compile(rf"(\d{{1,4}}|[一二两俩三四五六七八九十])\s?([{_ZH_CLASSIFIERS}])")
_QTY_EN = re.compile(
    r"\b(?:(\d{1,4})\s?(?:x\b|pcs\b|pieces?\b|units?\b|items?\b|pairs?\b|boxes\b|packs?\b)|"
    r"(?:x|qty:?|quantity:?)\s?(\d{1,4})\b|"
    r"(\d{1,3})\s(?=(?!days?\b|weeks?\b|months?\b|years?\b|hours?\b|mins?\b|minutes?\b|times?\b)"
    r"[a-z]+s\b)|"
    r"(one|two|three|four|five|six|seven|eight|nine|ten|a pair of|a couple of)\s"
    r"(?=(?:more\s)?[a-z]+s\b|pairs?\b|pieces?\b|units?\b))",
    re.IGNORECASE,
)


def find_quantities(text: str) -> list[Entity]:
    found: list[Entity] = []
    for m in _QTY_ZH.finditer(text):
        raw = m.group(1)
        value = int(raw) if raw.isdigit() else _ZH_DIGITS[raw]
        found.append(Entity("quantity", m.group(), m.start(), m.end(), str(value)))
    for m in _QTY_EN.finditer(text):
        raw = next(g for g in m.groups() if g)
        value = int(raw) if raw.isdigit() else _EN_NUMBERS[raw.lower()]
        found.append(Entity("quantity", m.group().strip(), m.start(), m.end(), str(value)))
    return found


# -- dates -----------------------------------------------------------------------------------
_WEEKDAYS_EN = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_WEEKDAYS_ZH = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}
_MONTHS_EN = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_REL_EN = {
    "today": 0,
    "tonight": 0,
    "yesterday": -1,
    "tomorrow": 1,
    "the day before yesterday": -2,
    "day before yesterday": -2,
    "the day after tomorrow": 2,
}
_REL_ZH = {
    "今天": 0,
    "今日": 0,
    "今晚": 0,
    "昨天": -1,
    "昨日": -1,
    "昨晚": -1,
    "前天": -2,
    "大前天": -3,
    "明天": 1,
    "后天": 2,
}
_ISO = re.compile(r"(?<!\d)(20\d{2})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_ZH_MD = re.compile(r"(?:(20\d{2})年)?(\d{1,2})月(\d{1,2})[日号]")
_EN_MD = re.compile(
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s(\d{1,2})(?:st|nd|rd|th)?\b"
    r"|\b(\d{1,2})(?:st|nd|rd|th)?\s(?:of\s)?(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b",
    re.IGNORECASE,
)
_EN_WEEKDAY = re.compile(
    r"\b(last|this|next|on)?\s?(" + "|".join(_WEEKDAYS_EN) + r")\b", re.IGNORECASE
)
_ZH_WEEKDAY = re.compile(r"(上上|上|这|本|下)?(?:周|星期|礼拜)([一二三四五六日天末])")
_EN_AGO = re.compile(
    r"\b(\d{1,3}|a|one|two|three|four|five|six|seven)\s(day|week)s?\sago\b", re.IGNORECASE
)
_ZH_AGO = re.compile(r"(\d{1,3}|[一两二三四五六七八九十])\s?(天|周|个星期|星期)前")
_REL_EN_RX = re.compile(
    r"\b(" + "|".join(sorted(_REL_EN, key=len, reverse=True)) + r")\b", re.IGNORECASE
)
_REL_ZH_RX = re.compile("|".join(sorted(_REL_ZH, key=len, reverse=True)))


def _num(raw: str) -> int:
    if raw.isdigit():
        return int(raw)
    return _ZH_DIGITS.get(raw) or _EN_NUMBERS.get(raw.lower()) or 1


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _past_year(today: dt.date, month: int, day: int) -> dt.date | None:
    """A day-month without a year means the most recent such date (shoppers talk about the past)."""
    d = _safe_date(today.year, month, day)
    if d and d > today + dt.timedelta(days=31):
        d = _safe_date(today.year - 1, month, day)
    return d


def find_dates(text: str, today: dt.date) -> list[Entity]:
    found: list[Entity] = []

    def add(m: re.Match[str], d: dt.date | None) -> None:
        if d is not None and not any(e.start <= m.start() < e.end for e in found):
            found.append(Entity("date", m.group().strip(), m.start(), m.end(), d.isoformat()))

    for m in _ISO.finditer(text):
        add(m, _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
    for m in _ZH_MD.finditer(text):
        if m.group(1):
            add(m, _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
        else:
            add(m, _past_year(today, int(m.group(2)), int(m.group(3))))
    for m in _EN_MD.finditer(text):
        mon = (m.group(1) or m.group(4)).lower()[:3]
        day = int(m.group(2) or m.group(3))
        add(m, _past_year(today, _MONTHS_EN[mon], day))
    for m in _REL_ZH_RX.finditer(text):
        add(m, today + dt.timedelta(days=_REL_ZH[m.group()]))
    for m in _REL_EN_RX.finditer(text):
        add(m, today + dt.timedelta(days=_REL_EN[m.group().lower()]))
    for m in _EN_AGO.finditer(text):
        n = 1 if m.group(1).lower() == "a" else _num(m.group(1))
        days = n * (7 if m.group(2).lower() == "week" else 1)
        add(m, today - dt.timedelta(days=days))
    for m in _ZH_AGO.finditer(text):
        n = _num(m.group(1))
        add(m, today - dt.timedelta(days=n * (1 if m.group(2) == "天" else 7)))
    for m in _ZH_WEEKDAY.finditer(text):
        target = _WEEKDAYS_ZH[m.group(2)]
        week_shift = {"上上": -2, "上": -1, "下": 1}.get(m.group(1) or "", 0)
        monday = today - dt.timedelta(days=today.weekday())
        add(m, monday + dt.timedelta(days=7 * week_shift + target))
    for m in _EN_WEEKDAY.finditer(text):
        target = _WEEKDAYS_EN.index(m.group(2).lower())
        modifier = (m.group(1) or "").lower()
        if modifier == "next":
            delta = (target - today.weekday()) % 7 or 7
            add(m, today + dt.timedelta(days=delta))
        elif modifier == "this":
            add(m, today - dt.timedelta(days=today.weekday()) + dt.timedelta(days=target))
        else:  # "last tuesday" / "on tuesday" / bare: the most recent such day before today
            delta = (today.weekday() - target) % 7 or 7
            add(m, today - dt.timedelta(days=delta))
    return found


# -- products ----------------------------------------------------------------------------------
_EN_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"the", "a", "an", "my", "of", "for", "and", "with", "to", "in", "on", "is", "it", "i",
         "pro", "new", "set", "pack", "mini", "max", "plus", "men", "women", "mens", "womens"}  # fmt: skip


_CJK = re.compile(r"[\u4e00-\u9fff]")
# what ends a Chinese product name after its head noun: "（黑色）", " 8mm", " 30ml", "》", " 2 包"
# ... and a pack size or packaging ("两件套", "三支装", "礼盒", "套装") or bed size: "竹制砧板两件套"
# is a 砧板, and "件套" / "礼盒" as keys matched any set or gift box the shopper wrote ("床上四件套"
# is bedding: its 四件套 stays)
_ZH_NAME_TAIL = re.compile(
    r"(?:[（(][^（）()]*[）)]|[》」]|\s*[\dA-Za-z.+%×x*]+\s*[片包颗枚袋个支对双只装]*|\s+|"
    r"(?<!床上)[一二两三四五六七八九十\d]+\s*[件片个支枚包只对瓶盒]?[套装]|(?:双拍|入门)?套装|礼盒|"
    r"综合装|罐装|精装|\s*[\d.]+\s*m\s*床)+$"
)


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _mention_span(
    spans: Sequence[tuple[str, int, int]], head: str, words: set[str]
) -> tuple[int, int]:
    """Where the product is written: the run of its name words (and short joining words)
    around the head noun, e.g. "bamboo cutting board" rather than "board"."""
    i = next(k for k, (stem, _, _) in enumerate(spans) if stem == head)

    def reach(k: int, step: int) -> int:
        # one word of the shopper's own may sit between name words: "bamboo cutting board" for
        # "Bamboo chopping boards"
        while True:
            nxt = next(
                (
                    j
                    for j in (k + step, k + 2 * step)
                    if 0 <= j < len(spans) and spans[j][0] in words
                ),
                None,
            )
            if nxt is None:
                return k
            k = nxt

    return spans[reach(i, -1)][1], spans[reach(i, 1)][2]


@dataclass
class ProductMatcher:
    """Matches product mentions in both languages against the catalog.

    English: a product matches when the message contains the last content word of its name (the
    head noun, e.g. "case" in "Silicone Phone Case") and scores by the share of its name words
    present. Chinese: the longest catalog name, category or head noun (last 2-3 characters) that
    appears as a substring. Good enough for references like "the phone case" / "那个耳机".
    """

    products: Sequence[dict]
    _en: list[tuple[str, list[str], str]] = field(default_factory=list, init=False)
    _zh: list[tuple[str, list[str]]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        for p in self.products:
            # one letter is no name word: "size S" made the "s" of "there's" name the T-shirt
            name_en = str(p.get("name_en", "")).lower()
            words = [_stem(w) for w in _EN_WORD.findall(name_en) if w not in _STOP and len(w) > 1]
            # the head noun ends the name before its variant (", size S", ", black") and before
            # what it is for ("case for iPhone 15"); model numbers are no head noun
            first_part = re.split(r",\s| for | with ", name_en)[0]
            stems = {_stem(w) for w in _EN_WORD.findall(first_part)}
            base = [w for w in words if w in stems and not any(ch.isdigit() for ch in w)]
            if words:
                self._en.append((str(p["_id"]), words, (base or words)[-1]))
            name_zh = str(p.get("name_zh", ""))
            keys = [name_zh] if name_zh else []
            # the head noun ends the name before its variant and size: "手机壳（黑色）" → 手机壳,
            # "瑜伽垫 8mm" → 瑜伽垫 (the tail "mm" matched "recommend"), "《水浒传》" → 水浒传
            core = _ZH_NAME_TAIL.sub("", name_zh)
            if len(core) >= 2 and _CJK.match(core[-1]) and _CJK.match(core[-2]):
                keys += [core[-2:], core[-3:]] if len(core) >= 3 else [core[-2:]]
            if keys:
                self._zh.append((str(p["_id"]), sorted(set(keys), key=len, reverse=True)))

    def find(self, text: str, limit: int = 3) -> list[Entity]:
        scored: dict[str, Entity] = {}
        lower = text.lower()
        spans = [(_stem(m.group(0)), m.start(), m.end()) for m in _EN_WORD.finditer(lower)]
        spans = [s for s in spans if s[2] - s[1] > 1]
        token_set = {stem for stem, _, _ in spans}
        for pid, words, head in self._en:
            if head not in token_set:
                continue
            share = sum(1 for w in words if w in token_set) / len(words)
            start, end = _mention_span(spans, head, set(words))
            ent = Entity("product", text[start:end], start, end, pid, score=round(share, 3))
            if pid not in scored or scored[pid].score < ent.score:
                scored[pid] = ent
        for pid, keys in self._zh:
            for key in keys:
                idx = text.find(key)
                if idx >= 0:
                    score = min(1.0, len(key) / max(2, len(keys[0])))
                    # the span reaches back over the name's earlier characters written before
                    # the head noun: "竹制砧板" in the message, not only "砧板"
                    start, before = idx, keys[0][: max(keys[0].rfind(key), 0)]
                    while before and start > 0 and text[start - 1] == before[-1]:
                        start, before = start - 1, before[:-1]
                    ent = Entity(
                        "product",
                        text[start : idx + len(key)],
                        start,
                        idx + len(key),
                        pid,
                        score=round(score, 3),
                    )
                    if pid not in scored or scored[pid].score < ent.score:
                        scored[pid] = ent
                    break
        best = sorted(scored.values(), key=lambda e: -e.score)
        return best[:limit]


def extract(
    text: str,
    today: dt.date,
    matcher: ProductMatcher | None = None,
    pii: Iterable[tuple[str, int, int]] = (),
) -> list[Entity]:
    """Every entity in a message, ordered by position, overlapping rule matches resolved."""
    entities: list[Entity] = []
    for kind, start, end in pii:
        if kind in ("phone", "email"):
            raw = text[start:end]
            value = re.sub(r"[^\d+]", "", raw) if kind == "phone" else raw.lower()
            entities.append(Entity(kind, raw, start, end, value))
    taken = [(e.start, e.end) for e in entities]

    def free(e: Entity) -> bool:
        return all(e.end <= s or e.start >= t for s, t in taken)

    for group in (
        find_order_ids(text),
        find_money(text),
        find_dates(text, today),
        find_quantities(text),
    ):
        for e in group:
            if free(e):
                entities.append(e)
                taken.append((e.start, e.end))
    if matcher is not None:
        entities.extend(matcher.find(text))
    return sorted(entities, key=lambda e: (e.start, e.type))
