"""Reading the customer's answer to the bot's own question: yes / no, which order, which item,
a new address.

These are short replies ("the second one", "第二个", "那个耳机的", "yes", "好的") that an intent
model cannot classify, so they are read with explicit rules against what the bot just offered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.reply.state import OrderChoice

# -- yes / no -----------------------------------------------------------------------------------
# Negations are checked first ("不可以" contains "可以", "not ok" contains "ok"). A yes must
# open a short reply: "我要查物流" or "what is the fee?" is a new request, never a confirmation.
_NO_ZH = (
    "不要",
    "不用",
    "不可以",
    "不好",
    "不确定",
    "不同意",
    "不了",
    "算了",
    "先不",
    "不是",
    "不行",
    "不对",
    "不取消",
    "不改",
    "不退",
    "不需要",
    "不必",
    "再想想",
    "等等",
    "等一下",
    "别取消",
    "别改",
    "别退",
)
_YES_ZH_OPENERS = (
    "好",
    "是",
    "确认",
    "确定",
    "可以",
    "嗯",
    "对",
    "行",
    "没问题",
    "同意",
    "麻烦",
    "ok",
    "OK",
    "Ok",
    "取消吧",
    "改吧",
    "退吧",
    "就这样",
    "没错",
)
_ZH_ASKING = re.compile(r"[?？吗]|谁|什么|怎么|哪|多少|几[天个时]")
_YES_AFTER_LEAD = (
    "好",
    "行",
    "可以",
    "确认",
    "确定",
    "取消吧",
    "改吧",
    "退吧",
    "就这样",
    "这样",
    "没问题",
)
_YES_ZH_PHRASES = ("确认取消", "确定取消", "帮我取消", "确认修改", "确认退货")
_NO_EN = re.compile(
    r"\b(no|nope|nah|not|don'?t|do not|never ?mind|nevermind|stop|wait|keep it|leave it|hold on)\b",
    re.IGNORECASE,
)
_YES_EN = re.compile(
    r"^\W*(yes|yeah|yep|yup|y|sure|ok|okay|confirm(ed)?|correct|right|please|go ahead|do it|"
    r"absolutely|definitely|of course|proceed|that'?s right|sounds good|cancel it|change it|"
    r"please do)\b",
    re.IGNORECASE,
)
_YES_EMOJI = set("👍👌✅🆗🙆") | {
    "\ufe0f",
    "\U0001f3fb",
    "\U0001f3fc",
    "\U0001f3fd",
    "\U0001f3fe",
    "\U0001f3ff",
}
_NO_EMOJI = set("👎❌🙅✋🚫") | {"\ufe0f", "\u200d", "\u2640", "\u2642"}
MAX_CONFIRM_CHARS = 40
# A pause word, then a question: "wait, is there a fee?", "hold on, how long does the refund take?"
_HESITATION_THEN_QUESTION = re.compile(
    r"^\W*(?:wait|hold on|hang on|hm+|um+|actually|oh)\b[\s,.!…-]*(?:(?:first|quick question|one "
    r"thing)\b[\s,:…-]*)?(?:how|what|when|where|which|why|who|is|are|do|does|did|can|could|will|"
    r"would|should)\b[^?]*\?",
    re.IGNORECASE,
)
MAX_ZH_NO_CHARS = 6
_EN_WORDS = re.compile(r"[A-Za-z']+")
_ZH_LEAD = re.compile(r"^[\s,.!?，。！？、~～]*(?:啊|哦|噢|呃|额|嗯|那就|那|唔)*[\s,，。、]*")
MAX_ZH_YES_CHARS = 12
_PUNCT = re.compile(r"[\s,.!?;:，。！？；：、~～…]+")


def _is_no(t: str) -> bool:
    """A refusal leads the message or makes it up: "no, keep it", "I don't want to", "不用了，
    谢谢". A "no" further into a sentence is not one ("the left one has no sound", "质量很好，
    没有不好的地方")."""
    m = _NO_EN.search(t)
    if m is not None:
        words = _EN_WORDS.findall(t)
        if len(words) <= 4 or len(_EN_WORDS.findall(t[: m.start()])) <= 2:
            return True
    compact = _PUNCT.sub("", _ZH_LEAD.sub("", t))
    return any(
        compact.startswith(w) or (w in compact and len(compact) <= MAX_ZH_NO_CHARS) for w in _NO_ZH
    )


def yes_or_no(text: str) -> bool | None:
    """True for yes, False for no, None when the message is neither."""
    t = text.strip()
    if not t or len(t) > MAX_CONFIRM_CHARS:
        return None
    if _HESITATION_THEN_QUESTION.search(t):
        return None  # "wait, is there a fee?" asks before answering
    if _is_no(t):
        return False
    if _YES_EN.search(t):
        return True
    compact = _PUNCT.sub("", t)
    if compact and set(compact) <= _YES_EMOJI:  # a thumbs-up answers "shall I?" too
        return True
    if compact and set(compact) <= _NO_EMOJI:
        return False
    if any(p in compact for p in _YES_ZH_PHRASES):
        return True
    if (
        len(compact) <= MAX_ZH_YES_CHARS
        and compact.startswith(_YES_ZH_OPENERS)
        # "对了 退货运费谁出啊" asks; it picked the one order listed
        and not _ZH_ASKING.search(compact[1:])
    ):
        return True
    # "那取消吧" / "那就改吧": a lead-in before the yes (it was asked again); not "那是什么"
    led = _PUNCT.sub("", _ZH_LEAD.sub("", t))
    if (
        len(compact) <= MAX_ZH_YES_CHARS
        and led != compact
        and led.startswith(_YES_AFTER_LEAD)
        and not re.search(r"[吗呢?？]|什么", led)
    ):
        return True
    return None


# -- which one ----------------------------------------------------------------------------------
_EN_ORDINALS = {
    "first": 1,
    "1st": 1,
    "second": 2,
    "2nd": 2,
    "third": 3,
    "3rd": 3,
    "fourth": 4,
    "4th": 4,
    "fifth": 5,
    "5th": 5,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
}
_ZH_NUMBERS = {
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "1": 1,
    "2": 2,
    "3": 3,
    "4": 4,
    "5": 5,
}
# "last week" / "the first time" are times, not positions in the list
_NOT_A_POSITION = r"(?!\s+(?:time|week|month|year|night|weekend|days?|\w+day)\b)"
_EN_ORDINAL_RX = re.compile(
    r"\b(first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th)\b"
    + _NOT_A_POSITION
    + r"|\b(?:number|no\.?|option|order|#)\s*([1-5])\b|#([1-5])\b",
    re.IGNORECASE,
)
_EN_WORD_NUMBER_RX = re.compile(
    r"^\W*(?:the\s+)?(one|two|three|four|five)(?:\s+one)?\W*$", re.IGNORECASE
)
_EN_LAST_RX = re.compile(r"\b(last|final|bottom|oldest)\b" + _NOT_A_POSITION, re.IGNORECASE)
_EN_NEWEST_RX = re.compile(r"\b(latest|newest|most recent|recent one|top)\b", re.IGNORECASE)
_ZH_ORDINAL_RX = re.compile(r"第\s*([一二两三四五1-5])\s*[个笔单件条项样]?")
_ZH_LAST_RX = re.compile(r"最后(?:一)?[个笔单件]|最早的")
_ZH_NEWEST_RX = re.compile(r"最近(?:的|那|一次|买|下单|拍)|最新(?:的|那)|刚(?:刚|才)?[买下拍]的")
_BARE_NUMBER_RX = re.compile(r"^\s*(?:#|no\.?\s*)?([1-5])\s*[.。!！]?\s*$", re.IGNORECASE)
_ALL_RX = re.compile(
    r"\b(all|everything|both|whole order|all of them|entire)\b|全部|都退|所有|两件都|都要",
    re.IGNORECASE,
)
_WORD_RX = re.compile(r"[a-z0-9]+")
_STOP = {
    "the",
    "a",
    "an",
    "my",
    "of",
    "for",
    "and",
    "with",
    "to",
    "in",
    "on",
    "one",
    "it",
    "i",
    "pro",
    "new",
    "set",
    "pack",
    "mini",
    "max",
    "plus",
    "that",
    "this",
    "order",
    # what customers say about any order, not one product: "tracking says delivered but nothing
    # arrived" picked the "Smart watch ... SpO2 tracking" order
    "tracking",
    "track",
    "delivery",
    "delivered",
    "shipping",
    "shipped",
    "refund",
    "return",
    "cancel",
    "address",
    "payment",
    "status",
    "package",
    "parcel",
    "arrived",
    "invoice",
}


def ordinal(text: str) -> int | None:
    """1-based position named in the message; -1 for "the last one"; None when there is none."""
    t = text.strip()
    m = _BARE_NUMBER_RX.match(t)
    if m:
        return int(m.group(1))
    m = _ZH_ORDINAL_RX.search(t)
    if m:
        return _ZH_NUMBERS[m.group(1)]
    if _ZH_LAST_RX.search(t):
        return -1
    if _ZH_NEWEST_RX.search(t):
        return 1
    m = _EN_ORDINAL_RX.search(t)
    if m:
        word = next(g for g in m.groups() if g)
        return int(word) if word.isdigit() else _EN_ORDINALS[word.lower()]
    if _EN_LAST_RX.search(t):
        return -1
    if _EN_NEWEST_RX.search(t):
        return 1
    m = _EN_WORD_NUMBER_RX.match(t)
    if m:
        return _EN_ORDINALS[m.group(1).lower()]
    return None


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _name_keys_en(names: Sequence[str]) -> set[str]:
    """Content words of English item names (a head noun like "case" is enough to refer)."""
    return {
        _stem(w)
        for n in names
        for w in _WORD_RX.findall(n.lower())
        if len(w) > 1 and w not in _STOP and w not in _UNITS and not any(ch.isdigit() for ch in w)
    }


# Sizes and counts in names ("30 ml", "gift box of 12") say nothing about which item is meant:
# "12 High Street" must not pick the pineapple cakes.
_UNITS = {"ml", "l", "g", "kg", "cm", "mm", "m", "oz", "lb", "pcs", "pc", "x"}


_BRACKETED = re.compile(r"（[^）]*）|\([^)]*\)|【[^】]*】|\[[^\]]*\]")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")


def zh_keys(name: str) -> list[str]:
    """How a Chinese product name is referred to: the name without colour/size in brackets, and
    the head noun, i.e. the last 2-3 characters of its last Chinese word ("素皮手机壳" → "手机壳",
    "机壳"; "7.1 环绕声游戏耳机" → "耳机"), found after a set count ("刀具七件套" → "刀具");
    a few one-character nouns ("炒锅" → "锅") as well."""
    core = _BRACKETED.sub("", name).replace("《", "").replace("》", "").strip()
    keys = [core] if len(core) >= 2 else []
    runs = _CJK_RUN.findall(_SET_SUFFIX.sub("", core))
    if runs:
        last = runs[-1]
        keys += [last, last[-3:], last[-2:]]
        if last[-1] in _ZH_ONE_CHAR_NOUNS:
            keys.append(last[-1])
    return [k for k in dict.fromkeys(keys) if len(k) >= 2 or k in _ZH_ONE_CHAR_NOUNS]


# "七件套", "16 件套", "套装", "礼盒装": how many, not what
_SET_SUFFIX = re.compile(
    r"\s*(?:(?:[\d一二三四五六七八九十两]+\s*[件个支只片]?\s*)套|套装|礼盒装)\s*$"
)
# Nouns shoppers use alone ("那个锅", "杯子"); not 包 / 表 / 书, which hide in 包裹, 表示, 说明书
_ZH_ONE_CHAR_NOUNS = frozenset("锅壶杯碗")


def _mentions_zh(text: str, names: Sequence[str]) -> bool:
    return any(key in text for name in names for key in zh_keys(name))


# "熊猫那个订单" / "熊猫的那单": two characters just before a reference word name the product
_ZH_REFERENCE = re.compile(r"([\u4e00-\u9fff]{2})的?(?:那个|那单|那件|这个|这单|订单)")
_ZH_NOT_A_NAME = frozenset(
    {"一下", "帮我", "我的", "查下", "看下", "上次", "最近", "刚买", "买的", "下单"}
)


def _named_before_reference(text: str, names: Sequence[str]) -> bool:
    """Two characters of a product's name right before "那个" / "订单": "查一下熊猫那个订单" names
    "大熊猫毛绒公仔" (it listed every order), away from the head noun zh_keys looks for."""
    words = {m.group(1) for m in _ZH_REFERENCE.finditer(text)} - _ZH_NOT_A_NAME
    return any(word in _BRACKETED.sub("", name) for name in names for word in words)


# Words shoppers use for an item the catalog names otherwise ("my headphones" for a "gaming
# headset", "手机套" for a "手机壳"). A match through them scores below any literal match, so
# "the earbuds" still prefers "Wireless Earbuds" over a "Gaming headset".
_EN_SAME_ITEM = {
    "headset": "headphone", "earphone": "headphone", "earbud": "headphone",
    "headphone": "headphone", "cover": "case", "sneaker": "shoe", "trainer": "shoe",
    "cellphone": "phone", "smartphone": "phone", "mobile": "phone", "television": "tv",
}  # fmt: skip
_ZH_SAME_ITEM = {
    "耳麦": "耳机", "耳塞": "耳机", "手机套": "手机壳", "保护壳": "手机壳", "保护套": "手机壳",
    "球鞋": "鞋", "运动鞋": "鞋", "电视机": "电视", "碗碟": "餐具", "盘子": "餐具", "碗": "餐具",
    "菜刀": "刀具",
}  # fmt: skip
_ZH_SAME_ITEM_RX = re.compile("|".join(sorted(_ZH_SAME_ITEM, key=len, reverse=True)))


def mentions(text: str, choice: OrderChoice, product_ids: Sequence[str] = ()) -> float:
    """How strongly the message refers to this choice by product (0 = not at all)."""
    if any(p in choice.product_ids for p in product_ids):
        return 1.0
    score = 0.0
    if _mentions_zh(text, choice.names_zh):
        score = 0.9
    elif _mentions_zh(
        _ZH_SAME_ITEM_RX.sub(lambda m: _ZH_SAME_ITEM[m.group(0)], text), choice.names_zh
    ):
        score = 0.85
    elif _named_before_reference(text, choice.names_zh):
        score = 0.45
    # one letter is no reference: the "t" of "hasn't" picked the "T-shirt" order
    words = {_stem(w) for w in _WORD_RX.findall(text.lower()) if len(w) > 1} - _STOP
    keys = _name_keys_en(choice.names_en)
    literal = len(words & keys)
    same_item = len(
        {_EN_SAME_ITEM.get(w, w) for w in words} & {_EN_SAME_ITEM.get(k, k) for k in keys}
    )
    if same_item:
        # more words of the name = a stronger reference (not a share of the name's words, which
        # made "phone case" prefer the shortest of three phone-case names); a word reached only
        # through a synonym counts half
        score = max(score, 0.4 + 0.1 * min(literal, 4) + 0.05 * min(same_item - literal, 4))
    return score


def pick_choice(
    text: str,
    choices: Sequence[OrderChoice],
    order_ids: Sequence[str] = (),
    product_ids: Sequence[str] = (),
) -> OrderChoice | str | None:
    """The order the customer means among those offered.

    Returns the choice, a typed order id that is not among them (a str: the caller looks it up
    scoped to the user, so a foreign id answers like an unknown one), or None when unclear.
    """
    for oid in order_ids:
        for c in choices:
            if c.order_id == oid:
                return c
        return oid
    if not choices:
        return None
    n = ordinal(text)
    if n is not None:
        if n == -1:
            return choices[-1]
        if 1 <= n <= len(choices):
            return choices[n - 1]
        return None
    return best_mention(text, choices, product_ids) or by_status(text, choices)


# "the paid one" / "没付款的那个": an order of the list named by its state (the negated states
# first: "not shipped yet" is a paid order, "unpaid" a pending one)
_STATUS_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (status, re.compile(rx, re.IGNORECASE))
    for status, rx in (
        (
            "pending",
            r"\bunpaid\b|\b(?:not|n'?t|never) (?:yet )?paid\b|\bhave ?n[o']?t (?:yet )?paid\b|"
            r"awaiting payment|\bpending\b|待付款|没付款|未付款|还没付",
        ),
        (
            "paid",
            r"\bnot (?:yet )?shipped\b|has ?n[o']?t shipped|待发货|没发货|未发货|还没发|"
            r"(?<![未没])(?:已)?付(?:了)?款的|\bpaid\b",
        ),
        ("shipped", r"\bshipped\b|on (?:its|the) way|in transit|已发货|发货了的|在路上"),
        ("delivered", r"\bdelivered\b|\barrived\b|\breceived\b|已签收|签收的|收到的|到了的"),
        ("cancelled", r"\bcancell?ed\b|已取消|取消了?的"),
        ("returned", r"\breturned\b|已退货|退(?:了|过)的"),
    )
)


_PICK_WORDING = re.compile(r"\b(?:one|order)\b|的|那(?:个|单|笔|件)", re.IGNORECASE)


def by_status(text: str, choices: Sequence[OrderChoice]) -> OrderChoice | None:
    """The one offered order in the state the message names; None when none or several are.
    Only a short pick ("the paid one", "已签收的那个"): "tracking says delivered but nothing
    arrived" names no delivered order."""
    status = state_named(text)
    fitting = [c for c in choices if status and c.status == status]
    return fitting[0] if len(fitting) == 1 else None


def state_named(text: str) -> str:
    """The order state a short pick names ("the paid one" → "paid"), "" when it names none."""
    short = len(text) <= 14 if re.search(r"[\u4e00-\u9fff]", text) else len(text.split()) <= 8
    if not (short and _PICK_WORDING.search(text)):
        return ""
    return next((status for status, rx in _STATUS_WORDS if rx.search(text)), "")


def top_mentions(
    text: str, choices: Sequence[OrderChoice], product_ids: Sequence[str] = ()
) -> list[OrderChoice]:
    """The choices the message names most strongly (several when they tie), in their order."""
    scores = [mentions(text, c, product_ids) for c in choices]
    top = max(scores, default=0.0)
    return [c for c, s in zip(choices, scores, strict=True) if top > 0 and s == top]


def best_mention(
    text: str, choices: Sequence[OrderChoice], product_ids: Sequence[str] = ()
) -> OrderChoice | None:
    """The single choice the message names by product; None when none or several tie."""
    scored = [(mentions(text, c, product_ids), i) for i, c in enumerate(choices)]
    scored = [(s, i) for s, i in scored if s > 0]
    if not scored:
        return None
    scored.sort(reverse=True)
    if len(scored) > 1 and scored[0][0] == scored[1][0]:
        return None  # two orders with the same product: ask rather than guess
    return choices[scored[0][1]]


def pick_items(
    text: str, items: Sequence[OrderChoice], product_ids: Sequence[str] = ()
) -> list[OrderChoice] | None:
    """Order lines chosen for a return: all of them, one by position or by name; None if unclear.

    ``items`` reuse OrderChoice with one product each (order_id holds the product id).
    """
    named = named_items(text, items, product_ids)
    if named:
        return named
    n = ordinal(text)
    if n is not None:
        if n == -1:
            return [items[-1]]
        return [items[n - 1]] if 1 <= n <= len(items) else None
    return None


def named_items(
    text: str, items: Sequence[OrderChoice], product_ids: Sequence[str] = ()
) -> list[OrderChoice] | None:
    """Lines chosen by name or product ("the phone case", "耳机") or "all"; None otherwise."""
    if _ALL_RX.search(text):
        return list(items)
    named = [c for c in items if mentions(text, c, product_ids) > 0]
    return named or None


# -- addresses ----------------------------------------------------------------------------------
_ZH_ADDRESS_HINT = re.compile(r"(省|市|区|县|镇|路|街|道|号|弄|巷|村|栋|楼|室|单元|小区|大厦)")
_EN_ADDRESS_HINT = re.compile(
    r"\b(street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|"
    r"square|sq|apt|apartment|suite|unit|floor|building|close|crescent|terrace|highway|hwy)\b\.?",
    re.IGNORECASE,
)
_ZH_REGION = re.compile(r"^(.{2,8}?(?:省|自治区))")
_ZH_CITY = re.compile(r"(.{2,8}?市)")
# Cities written without 市 ("北京朝阳区…", "杭州西湖区…"): the order system needs a city, and
# "北京朝阳区建国路88号" had none. The municipalities, provincial capitals and other large cities.
_ZH_CITY_NAMES = re.compile(
    r"^(?:.{2,8}?(?:省|自治区))?(北京|上海|天津|重庆|广州|深圳|杭州|南京|苏州|成都|武汉|西安|长沙|"
    r"郑州|青岛|厦门|宁波|无锡|合肥|福州|济南|沈阳|大连|哈尔滨|长春|石家庄|太原|昆明|南宁|贵阳|"
    r"南昌|兰州|乌鲁木齐|呼和浩特|银川|西宁|拉萨|海口|三亚|珠海|东莞|佛山|温州|常州|徐州|烟台|"
    r"泉州|中山|惠州|绍兴|嘉兴|金华|台州|南通|扬州|潍坊|洛阳|唐山|保定)(?!市)"
)
# A place with no street yet ("改到北京朝阳区"): kept until the street comes
_ZH_PLACE_ONLY = re.compile(r"^[\u4e00-\u9fff]{2,16}(?:省|市|区|县|镇)$")
_POSTAL = re.compile(r"\b(\d{5,6}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})\b")
_ADDRESS_LEAD = re.compile(
    # "change the address on <order id> to ...": the id is taken out before, "on   to" is left
    r"^(?:(?:on|for|of)\s+(?:(?:the|my|this|that)\s+)?(?:order\s+)?)?"
    r"(?:(?:please\s+)?(?:change\s+it\s+|send\s+it\s+|ship\s+it\s+|deliver\s+it\s+)?to[:\s]+|"
    r"new address(?: is)?[:\s]+|the address is[:\s]+|"
    r"改[到成为]|新地址[是:：]?|地址[是:：]|寄到|送到)",
    re.IGNORECASE,
)


# The request before the address: "please change my address to ...", "I moved, new address is
# ...", "帮我把地址改成...", "麻烦寄到...". The address is what follows the last such phrase.
_ADDRESS_REQUEST = re.compile(
    r"\b(?:new\s+)?address(?:\s+(?:is|to))?\b|\bmoved\s+to\b|"
    r"\b(?:change|send|ship|deliver)\s+(?:it\s+|them\s+|the\s+order\s+|my\s+order\s+)?to\b|"
    r"改[到成为]|换[到成]|新地址|地址[是为:：]|寄到|送到|发到",
    re.IGNORECASE,
)


# what starts another request after the address: "…文三路100号，另外B到哪了"
_NEXT_REQUEST = re.compile(
    r"[，,;；。]?\s*(?:另外|还有|顺便|以及|然后|同时|再帮我|再把)|"
    r"[,;.]?\s*\b(?:and also|also|plus|then|and (?:where|cancel|return|refund|track))\b",
    re.IGNORECASE,
)


def _after_request(text: str) -> str:
    ends = [m.end() for m in _ADDRESS_REQUEST.finditer(text)]
    rest = text[ends[-1] :] if ends else text
    cut = _NEXT_REQUEST.search(rest)
    return rest[: cut.start()] if cut else rest


_CN_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_ZH_LABELLED_NAME = re.compile(
    r"(?:收件人|收货人|联系人|姓名)\s*[:：]?\s*([\u4e00-\u9fffA-Za-z·]{1,8}?)(?=[\s,，;；]|1[3-9]\d{9}|$)"
)
# a 2-4 character name set apart before the phone number: "…100号 李雷 13800138000"
_ZH_TRAILING_NAME = re.compile(r"(?:^|[\s,，;；])([\u4e00-\u9fff]{2,4})[\s,，;；]*$")


def parse_address(text: str, language: str) -> dict[str, str] | None:
    """A new shipping address from free text, or None when the message does not look like one.

    Deliberately light: the whole address goes to line1 (what a courier reads); city, region and
    postal code are picked out when they are plain to see. The customer confirms it before any
    change is made.
    """
    t = _ADDRESS_LEAD.sub("", _after_request(text).strip()).strip(" 。.，,:：")
    if len(t) < 6 or len(t) > 200:
        return None
    has_digit = any(ch.isdigit() for ch in t)
    zh_hint = bool(_ZH_ADDRESS_HINT.search(t))
    en_hint = bool(_EN_ADDRESS_HINT.search(t))
    if not (
        (zh_hint and (has_digit or len(_ZH_ADDRESS_HINT.findall(t)) >= 2))
        or (en_hint and has_digit)
        or (has_digit and t.count(",") >= 2)
    ):
        return None
    address = {"line1": t, "display": t}
    if zh_hint and re.search(r"[\u4e00-\u9fff]", t):
        # "…100号 李雷 13800138000" / "收件人小王 137…": the recipient, not part of line1
        line1 = t
        if m := _ZH_LABELLED_NAME.search(line1):
            address["name"] = m.group(1)
            line1 = line1[: m.start()] + " " + line1[m.end() :]
        if m := _CN_MOBILE.search(line1):
            address["phone"] = m.group(0)
            before = line1[: m.start()]
            if "name" not in address and (n := _ZH_TRAILING_NAME.search(before)):
                address["name"] = n.group(1)
                before = before[: n.start()]
            line1 = before + " " + line1[m.end() :]
        address["line1"] = re.sub(r"\s+", " ", line1).strip(" ,，。")
        # "收货人：张三，电话139…，地址：杭州市…": the recipient came before the address
        if "name" not in address and (m := _ZH_LABELLED_NAME.search(text)):
            address["name"] = m.group(1)
        if "phone" not in address and (m := _CN_MOBILE.search(text)):
            address["phone"] = m.group(0)
        if m := _ZH_REGION.search(t):
            address["region"] = m.group(1)
        if m := _ZH_CITY.search(t):
            address["city"] = m.group(1).removeprefix(address.get("region", ""))
        elif m := _ZH_CITY_NAMES.search(t):
            address["city"] = m.group(1) + "市"
    else:
        parts = [p.strip() for p in t.split(",") if p.strip()]
        if len(parts) >= 2:
            address["line1"] = parts[0]
            address["city"] = _POSTAL.sub("", parts[1]).strip() or parts[1]
            rest = [p for p in parts[2:] if _POSTAL.sub("", p).strip()]
            if rest:
                address["line2"] = ", ".join(rest)
    if m := _POSTAL.search(t):
        address["postal_code"] = m.group(1)
    return address


def place_only(text: str) -> str:
    """A Chinese place without a street ("改到北京朝阳区" → "北京朝阳区"), or ""."""
    t = _ADDRESS_LEAD.sub("", _after_request(text).strip()).strip(" 。.，,:：")
    return t if _ZH_PLACE_ONLY.fullmatch(t) else ""


def joined_address(part: str, text: str, language: str) -> dict[str, str] | None:
    """An address given in two messages: a place ("北京朝阳区") and the street, or a street and
    then the city ("10 Downing St" → "London SW1A 2AA"), in either order."""
    rest = _ADDRESS_LEAD.sub("", _after_request(text).strip()).strip(" 。.，,:：")
    if re.search(r"[\u4e00-\u9fff]", part + rest):
        place_first = bool(_ZH_PLACE_ONLY.fullmatch(part)) or not re.search(r"\d", part)
        joined = part + rest if place_first else rest + part
    else:
        joined = f"{part}, {rest}"
    return parse_address(joined, language)


_ANY_PHONE = re.compile(r"(?<![\d+])\+?\d[\d\s()-]{6,16}\d(?!\d)")
_EN_NAME = re.compile(
    r"\b(?:name|recipient)\s*(?:is|to|:)?\s*([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)|"
    r"\b(?:should be|change it to|make it)\s+([A-Z][a-z]+\s+[A-Z][a-z]+)"
)
# "收件人改成李雷": the new recipient's name after the label and a change word
_ZH_NEW_NAME = re.compile(
    r"(?:收件人|收货人|联系人|姓名)(?:的?名字)?\s*(?:改成|改为|换成|写成|是|为)\s*[:：]?\s*"
    r"([\u4e00-\u9fff·]{2,4})(?=[\s,，;；。]|1[3-9]\d{9}|$)"
)


def parse_contact(text: str) -> dict[str, str] | None:
    """A new recipient phone and/or name from a message that is no address: "改成13912345678",
    "收件人改成李雷，电话139…", "new number is +44 7700 900123", "it should be Jane Doe"; None
    when it has neither."""
    contact: dict[str, str] = {}
    m = _CN_MOBILE.search(text) or _ANY_PHONE.search(text)
    if m is not None and sum(ch.isdigit() for ch in m.group(0)) >= 7:
        contact["phone"] = re.sub(r"[\s()-]", "", m.group(0))
    n = _ZH_NEW_NAME.search(text) or _ZH_LABELLED_NAME.search(text) or _EN_NAME.search(text)
    name = next((g for g in n.groups() if g), "") if n else ""
    # "收货人电话写错了" labels no name
    if name and not re.search(r"电话|手机|号|改|错|换|的|number|phone", name, re.IGNORECASE):
        contact["name"] = name
    return contact or None


def address_text(address: dict[str, str]) -> str:
    """How an address is read back to the customer: as they wrote it."""
    return address.get("display") or ", ".join(
        address[k] for k in ("line1", "line2", "city", "postal_code") if address.get(k)
    )
