"""When and how a conversation goes to a person: dispute signals, the sentiment trend, priority,
and the short summary the human agent reads first.

The handoff event is the turn's envelope on kefu.handoff.v1 with ReplySection.handoff_reason /
handoff_priority / handoff_summary; afterwards every customer message is forwarded there (action
``forward``) until a ControlEvent ``release`` arrives on kefu.control.v1.
"""

from __future__ import annotations

import re

from services.reply.state import DialogueState
from services.reply.templates import intent_name

REASONS = (
    "customer_request",
    "negative_sentiment",
    "low_confidence",
    "dispute",
    "order_service_down",
)

# Money taken wrongly, chargebacks, legal or regulator threats, fraud: a person must handle these.
_DISPUTE_EN = re.compile(
    r"\b(charged (me )?(twice|double|two times)|double[- ]charged?|charged more than once|"
    r"chargeback|charge ?back|dispute (the|this|a) (charge|payment|transaction)|lawyers?|attorney|"
    r"sue|suing|legal action|take (you|this) to court|small claims|fraud|scam(med)?|"
    r"report (you|this) to|consumer protection|bbb|ripped off|stole my money|"
    # someone else in the account: a person must secure it and look at the orders
    r"hacked|someone (else )?(logged|got|broke) into my account|"
    r"unauthori[sz]ed (orders?|purchases?|charges?|logins?|access)|"
    r"(orders?|purchases?) (that )?i (didn'?t|did not|never) (make|place|made|placed)|"
    # delivered on paper, never received: someone must take it up with the courier
    r"(says|shows|marked( as)?|tracking says)( it( was|'s| is))? delivered,? but (i )?"
    r"(never|didn'?t|did not|haven'?t|have not|nothing|it never|it didn'?t|it hasn'?t)|"
    # "my package says delivered but it's not here"
    r"delivered,? but (it'?s|it is|they'?re|they are|its|nothing'?s|nothing is) (still )?"
    r"(not|nowhere|no ?where) (here|there|to be found|in sight)|"
    # "tracking says 3541739890 was delivered but I never got it"
    r"(says|shows|marked)( \S+){0,3}? (was |is |has been )?delivered,? but (i )?(never|didn'?t|"
    r"did not|haven'?t|have not|still haven'?t) (got|gotten|get|receive[d]?|seen|see)|"
    r"(orders?|purchases?) (on|in) my account (that )?i (didn'?t|did not|never) "
    r"(make|place|made|placed|order|recogni[sz]e)|"
    r"i (didn'?t|did not|never) (make|place|order) (this|these|that|those|the) (orders?|purchases?)|"
    r"account (was |has been |got )?(compromised|stolen|hijacked)|"
    # a parcel stolen, lost by the courier, or someone else's delivered: a case for a person
    r"(package|parcel|delivery|order|box) (was |got |has been )?(stolen|taken|lost)|"
    r"(stole|took) my (package|parcel|delivery)|lost my (package|parcel)|"
    r"(received|got|delivered) (someone|somebody) else'?s (package|parcel|order|box|delivery)|"
    # compensation is decided by a person ("a week late, I want compensation" was told the order
    # could not be returned yet)
    r"compensat(e|ed|ion)|reimburse(ment)?)\b",
    re.IGNORECASE,
)
_DISPUTE_ZH = re.compile(
    r"扣了两次|扣款两次|重复扣款|多扣|扣了两遍|被扣两次|付了两次|重复支付|拒付|退单争议|律师|起诉|"
    r"告你们|法院|打官司|消协|消费者协会|12315|工商局|市场监管|报警|骗子|诈骗|欺诈|黑店|"
    r"(?:账号|账户|帐号|帐户)\S{0,4}被盗|被盗号|盗号|盗刷|被人登录|别人登录了我的|不是我(?:本人)?下的|"
    r"我没下过|我没买过这|莫名其妙多了|"
    r"(?:显示|已经|写着)?已?签收.{0,8}(?:没|未)(?:有)?收到|签收了.{0,8}(?:没|未)(?:有)?收到|"
    r"(?:包裹|快递|东西|货)(?:被人?|让人)(?:偷|拿走|顺走)|(?:包裹|快递)(?:丢了|弄丢|丢件)|丢件|"
    r"收到(?:了)?别人的(?:包裹|快递|货|东西)|赔偿|赔钱|补偿(?!券|金额度)|(?:你们|要|得)赔"
)
# How many negative turns in a row mean the conversation is not getting better.
NEGATIVE_TURNS_FOR_HANDOFF = 3
# A turn counts towards that run only when clearly negative: return and refund requests read as
# mildly negative to a model that learnt from reviews ("订单…我想退货" 0.60, "退款到哪一步了"
# 0.53-0.59), and three such plain requests handed a calm customer to a person (demo, measured).
NEGATIVE_SCORE_FOR_STREAK = 0.65
# Negative-score history kept for the trend (the last few turns).
SENTIMENT_HISTORY = 4

PRIORITY = {
    "dispute": "high",
    "negative_sentiment": "high",
    "order_service_down": "normal",
    "customer_request": "normal",
    "low_confidence": "low",
}


def dispute_signal(text: str) -> str | None:
    """The words that make this a dispute (charged twice, chargeback, lawyer, ...), or None."""
    m = _DISPUTE_EN.search(text) or _DISPUTE_ZH.search(text)
    return m.group(0) if m else None


def update_sentiment(state: DialogueState, label: str, negative_score: float) -> None:
    """Track consecutive clearly negative turns and the recent negative scores."""
    clearly_negative = label == "negative" and negative_score >= NEGATIVE_SCORE_FOR_STREAK
    state.negative_streak = state.negative_streak + 1 if clearly_negative else 0
    state.negative_scores.append(round(negative_score, 4))
    del state.negative_scores[:-SENTIMENT_HISTORY]


def getting_worse(state: DialogueState) -> bool:
    """Negative for NEGATIVE_TURNS_FOR_HANDOFF turns running: the bot is not making it better."""
    return state.negative_streak >= NEGATIVE_TURNS_FOR_HANDOFF


def priority(reason: str, escalate: bool = False) -> str:
    """urgent when sentiment flagged distress; otherwise by reason."""
    if escalate:
        return "urgent"
    return PRIORITY.get(reason, "normal")


def summary(state: DialogueState, reason: str, last_text: str, language: str) -> str:
    """A few lines the agent reads before answering: why, what the customer wanted, the last
    message (masked), and any order in play. In the conversation's language."""
    intents: list[str] = []
    for past in state.history:
        name = intent_name(past.intent, language) if past.intent else ""
        if name and name not in intents:
            intents.append(name)
    order_id = (state.pending.order_id if state.pending else "") or state.last_order_id
    sep = "、" if language == "zh" else ", "
    # the changes asked for in the same message as the pending one, not served yet
    queued = sep.join(
        f"{intent_name(r.intent, language)} ({r.order_id})" for r in state.next_requests
    )
    if language == "zh":
        lines = [f"转人工原因：{_REASON_ZH.get(reason, reason)}；共{state.turn}轮"]
        if intents:
            lines.append(f"客户诉求：{sep.join(intents)}")
        if order_id:
            lines.append(f"相关订单：{order_id}")
        if queued:
            lines.append(f"尚未处理：{queued}")
        lines.append(f"最后一句：{last_text[:200]}")
    else:
        lines = [f"Handoff: {reason.replace('_', ' ')}; {state.turn} turns"]
        if intents:
            lines.append(f"Customer wanted: {sep.join(intents)}")
        if order_id:
            lines.append(f"Order: {order_id}")
        if queued:
            lines.append(f"Also asked, not done yet: {queued}")
        lines.append(f"Last message: {last_text[:200]}")
    return "\n".join(lines)


_REASON_ZH = {
    "customer_request": "客户要求人工",
    "negative_sentiment": "客户情绪不满",
    "low_confidence": "机器人多次未理解",
    "dispute": "扣款或纠纷",
    "order_service_down": "订单系统不可用",
}
