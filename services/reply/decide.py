"""One action per customer turn, with the reason: the reply stage's dialogue policy.

The rules, checked in this order (conversation scripts in tests/conversations rely on them):

1. Handoff active (a person has the conversation) → ``forward``: the message goes to
   kefu.handoff.v1 and the bot says nothing, until the agent desk sends ``release``.
1b. "Are you a bot?" / "你是机器人吗" / "who are you" / "what can you do" → ``answer`` saying what the bot is and how
   to reach a person, unless the message also asks for one or sentiment escalates.
2. Handoff triggers → ``handoff`` (reason):
   - intent contact_human_agent (confident) or an explicit "转人工" / "talk to a person" →
     customer_request, unless the message asks when people are there ("几点有人工客服": the
     service hours, rule 8);
   - dispute words (charged twice, chargeback, lawyer, 重复扣款, 投诉到消协, a hacked account,
     orders the customer did not place, "delivered" but never received ...) → dispute, after
     an apology; so does intent complaint (confident) unless the bot just asked a question (a
     return reason such as "it arrived broken" reads like a complaint but answers the question);
   - a manager or supervisor asked for ("叫你们经理来") → customer_request;
   - sentiment ``escalate``, or negative NEGATIVE_TURNS_FOR_HANDOFF turns running →
     negative_sentiment.
3. A question of the bot is pending (which order, yes/no, new address, which items, reason, retry):
   the message is read as its answer (``followups``) and the request continues. When it is no
   answer but a confident other intent (small talk included: "thanks" ends the request), the
   pending one is dropped and rule 4 on applies; when it is neither, the bot asks again
   (``ask``), which counts as a low-confidence turn. A return reason is taken as given unless
   it is a question about something else; so is a pick of an order ("where is my phone case
   order?" while asked which order to cancel starts tracking). An order is picked by number,
   id, product or, in a short reply, its state ("the paid one"); a fault named when asked which
   order to track ("耳机有杂音") makes it a return of that order. A new address sent before the
   order is chosen is kept for it, and so is a new phone for the recipient. Asked to confirm, a
   message naming another order of the same list ("不是这个，是第三个") switches the request to
   that order, and "不是这个 另外一个" to the other one (or offers the rest). Asked which order: a
   question that is no order request ("wait, first, do you ship to Canada?") is answered and the
   choice kept for the next turn only, where a pick ("ok, the paid one") resumes it (an order
   pick is never handed to a person for a misread contact_human_agent), and so is an unsure
   question the FAQ answers ("对了 退货运费谁出啊"); thanks ends the request;
   "all of them" / "全部都查一下" answers every listed order for a look-up; "另外一个" asks again.
   Asked to confirm a change or for the new address, a question ("取消要扣钱吗", "will that delay
   the delivery?") is answered with a reminder that the change waits, and the next turn's yes /
   no or address goes on with it. An address may come in two messages ("改到北京朝阳区" then
   "建国路88号"); one without a city asks for the city; one the order system rejects
   (INVALID_ARGUMENT) is asked for again. An acknowledgement ("k", "ok") or an item named
   ("只退第一件") is no return reason.
3a. The customer picks one of the options the previous turn's clarify offered ("第一个",
   "2", "退货退款") → that request, as if the model had read it.
3b. Correction: within RECENT_ORDER_TURNS of an order request that offered or matched several
   of the customer's orders, a message naming another of them ("no, the mug one") that is not a
   confident different request repeats the request for that order. An order id alone with no
   such request before it → track_order for it (rule 7). Right after an order of such a list
   was served, "the other one" / "不对 是另一个" → the same request for the other (or the rest
   offered; after an order named by its id, the customer's orders), and "the one before that" /
   "上一个" → for the next older order of the list.
   After an order was chosen by its state ("俺的快递咋还不到"), naming another order's product
   ("就那个卫衣", read as place_order) is such a correction too. Right after "I can't find order
   X", an id ("sorry wrong number, it's Y") → the same request for Y. Someone else's order
   ("这是我朋友的订单") → ``answer`` saying only the account that placed it can see it.
   "sorry what?" / "没看懂" after an answer → ``answer`` repeating it; "那怎么申请" / "how do I do
   that?" right after an FAQ answer → that answer again; "and my phone number?" / "那手机号呢"
   right after an informational answer → the same intent's answer. Right after "order X can
   still be changed under My Orders", a size / colour / quantity asked for ("I want a bigger
   size", "换大一码") → ``answer`` saying the customer changes those there; right after a
   shipped order's tracking, "能不能快点" / "can you speed it up" → ``answer``: the courier sets
   the pace, a person checks once it is late; right after the invoice answer, "send it to my
   email" / "发我邮箱" → that answer again (it says how).
3c. Messages with nothing to classify: "ok" / "好的" → ``answer`` (acknowledged); emoji or
   punctuation only, or a lead-in ("那个", "我想问下", "um") → ``answer`` inviting the question;
   "算了不取消了" / "never mind" with nothing pending → ``answer`` (acknowledged); an unsure or
   out-of-scope remark that is no question right after an order was served → ``answer``
   (acknowledged); "where's my <item>" read as unsure or out of scope → track_order (rule 7);
   so is "where is my order <id>" / "track <id>" read as another, non-order request, and
   "催一下发货" /
   "when will it ship" read as unsure or out of scope (the unshipped orders are offered).
3c'. Asked what to buy ("有什么好用的耳机推荐吗", "can you recommend a phone case?"; recommend's
   ``requested``), with no order id and no confident order request, complaint, payment problem
   or request for a person → ``answer`` listing recommend's items, in the category named when
   one is; with none → ``answer`` asking what kind of product is wanted. recommend also marks a
   short message naming a kind of product right after such an answer ("what about headphones?",
   "那耳机呢").
3d. A problem with goods received ("you sent me the wrong item", "屏幕碎了", "衣服有个洞", a product
   named as broken: "耳机坏了"; not a
   missing item, which the FAQ serves) → get_refund (rule 7) with the message as the return
   reason, whatever the intent model read, unless it read a return, refund, cancellation, a
   person or the return policy; asked as a question the FAQ answers ("坏的怎么办") → ``faq``.
   So does the return policy, or an unsure return, read for a return asked for ("我想return这个item",
   "I'd like to return an item"), and something bought that does not fit ("我买的衣服太大了",
   read as unsure, out of scope, placing or changing an order), the size its reason. An exchange
   ("我要换货") read as change_order, out of scope or unsure → ``answer`` saying how exchanges work
   (there is no exchange RPC; the after-sales page does it). A refund asked for an order "just
   paid" / "还没发货" with no order named → the cancellation flow (nothing to send back yet), also
   when read as a refund status ("我要退款 东西还没发").
   A price drop after buying ("降价了能退差价吗"), an item missing from a parcel or where a refund
   goes ("will my refund go back to my card?") → ``faq`` when it holds the answer (price
   protection; check for a second parcel; the original payment method).
4. Low confidence (confidence < LOW_CONFIDENCE, not out_of_scope): ``faq`` when an FAQ entry
   matches above its threshold ("优惠券用不了是怎么回事"); else the 2nd in a row →
   ``handoff`` (low_confidence); otherwise ``clarify`` offering the top 2-3 intents. Exception:
   a message with an order id, or one saying "it" / "my order" right after an order was looked
   up (rule 7), whose top intent is an order intent at ≥ ORDER_HINT_CONFIDENCE goes on as that
   intent (the message is plainly about that order).
4b. The customer will refuse the parcel ("ok then I'll just refuse the delivery", "那我直接拒收吧")
   → ``answer`` saying how refusing works (for the order just discussed when there is one); the
   tracking number or courier asked for right after an order answer ("which courier is it?") →
   that order's tracking (rule 7); asking for the other language ("can you reply in English
   please", "请用中文") → ``answer`` acknowledging it (while asked which order: the list again,
   in that language, not counted as a failed pick).
5. out_of_scope → ``faq`` when an FAQ entry matches above its threshold, else ``clarify`` saying
   what the bot can help with.
6. greeting / thanks / goodbye → ``answer``; thanks that ends the chat ("thanks bye", "好的谢谢
   没问题了") → ``answer`` saying goodbye; sarcastic thanks ("great, another delay. thanks a lot")
   → ``answer`` asking what is still wrong (as "that didn't help", rule 3c). Then a topic a rule
   names (price matching, a refund without a return, a gift message, an item missing from a parcel, the courier, another colour
   or size, current promotions, a company invoice title, a missed delivery or parcel locker,
   combining orders, collecting in person, a product's manual, an order confirmation not
   received) → ``faq`` with that entry when the message scores at least
   TOPIC_FAQ_THRESHOLD on it, whatever intent was read (also for unsure and out-of-scope
   messages, rules 4 and 5).
7. Order intents (track_order, cancel_order, change_shipping_address, change_order, get_refund,
   track_refund, check_invoice, get_invoice; delivery_period about one of the customer's orders
   counts as track_order: "when will my parcel arrive", "我买的耳机什么时候到", an order id, but
   not "if I order today ..."): the order id comes from the message's entities or
   the pending slot; or, within RECENT_ORDER_TURNS of looking an order up, "it" / "this order" /
   "这单" / "my order" / "那帮我取消吧" means that order (unless another order or a product is
   named), and so does a short request right after the answer ("能取消吗", "can I cancel?");
   without one → ``ask`` listing the customer's recent orders (ListOrders): only those
   with the product named when several have it, and for tracking only the unshipped ones for
   "还没发货" / "什么时候发货", the paid and shipped ones for "still hasn't arrived"; when that
   leaves one order, or the message names a product only one has, or says "my last order" /
   "最近那单" (the newest; "my last delivered order": the newest of those), or names a state
   only one has ("cancel the unpaid one"), that order is served; or it is a general question
   (no "我" / "my" / "I", and not a bare command such as "取消订单") that the FAQ answers above
   threshold → ``faq``. With one → OrderService:
   track/change_order/invoice → GetOrder and ``order``; track_refund → GetRefundStatus and
   ``order`` (no refund: GetOrder says why — not cancelled, or still on its way); cancel →
   GetOrder, then ``ask`` a confirmation stating the fee rule, yes →
   CancelOrder (``order``), no → ``answer``; change address → ``ask`` the new address, ``ask``
   to confirm it, then ChangeShippingAddress (``order``); get_refund → delivered and inside the
   window: ``ask`` which items (several lines), ``ask`` why unless the request already said
   ("耳机音质太差了想退"), then CreateReturn (``order``).
   Several order ids in one look-up (tracking, refund status, invoice) → one answer per order,
   at most MAX_ORDERS_PER_TURN. When the clauses split the message into requests per order
   ("取消订单A，另外B到哪了", "cancel A and return B"; a clause with no request word has the one
   before it), the look-ups are answered, then the changes go on one at a time in the order
   asked: the next starts in the same reply once the one before is settled (done, declined or
   refused) and is dropped when the customer moves on (``next_requests``). A change asked for
   the recipient's phone ("改一下收货人电话") takes a phone number alone and keeps the address.
   "Why was my order cancelled?" (whatever the intent read) is tracking among the
   cancelled orders; a cancelled order's answer says where the money is, and, asked why, the
   usual reasons and that a person can check. "cancel my order and refund me" read as a refund
   is a cancellation. "ok" / "好的" to a which-question is no answer: asked again (a list of
   one order: that one).
   NOT_FOUND → ``order`` saying it is not one of their orders (same words whether the order
   exists for someone else or not). The user_id is always the conversation's.
   The order system failing (UNAVAILABLE, DEADLINE_EXCEEDED, breaker open) → ``order`` "system
   busy, try again in a minute" keeping the request pending; the 2nd turn in a row →
   ``handoff`` (order_service_down).
8. Informational intents → ``faq`` when an FAQ entry matches above threshold, else ``answer``
   from the intent's template.

A message of several questions ("满多少包邮？支持花呗吗？"): each question (``question_clauses``) is
also looked up in the FAQ on its own; an FAQ or template answer gets the other questions' answers
under it, a clarify is replaced by them when every question has its entry.

Every reply is in the customer's language (envelope language zh → zh, anything else → en; a
message whose language ingest is unsure of, like "ok" or an order id, keeps the conversation's,
and a new conversation starts in the customer's last one),
starts with an apology when the sentiment is clearly negative (not when it says a request was
dropped: "先不改了" reads negative), never repeats the previous reply word for
word (template variants rotate), and ends with the recommendations when recommend attached some.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from kefu.v1 import orders_pb2
from kefu.v1.events_pb2 import Envelope, OrderCall, ReplySection
from services.reply import followups
from services.reply import handoff as handoffs
from services.reply import templates as tpl
from services.reply.faq import FaqHit
from services.reply.orders_client import OrderCallResult, OrderGateway
from services.reply.state import (
    DialogueState,
    Handoff,
    NextRequest,
    OrderChoice,
    PastTurn,
    Pending,
)
from services.runtime.mongo import ORDER_ID_IN_TEXT_RE
from services.runtime.script import to_simplified

LOW_CONFIDENCE = 0.5
# nlu's product score (the share of the product's name in the message) from which a product
# entity names that product rather than its kind (see Turn.named_products)
SPECIFIC_PRODUCT_SCORE = 0.5
# An order id in the message is strong evidence: an order intent this sure is acted on.
ORDER_HINT_CONFIDENCE = 0.3
LOW_CONFIDENCE_TURNS_FOR_HANDOFF = 2
ORDER_FAILURE_TURNS_FOR_HANDOFF = 2
MAX_LISTED_ORDERS = 5
MAX_ORDERS_PER_TURN = 3  # order ids answered from one message
MAX_RECOMMENDATIONS = 3
# An order request this short, sent right after an order answer, is about that order
SHORT_FOLLOW_UP_CHARS = 12  # letters, digits and Chinese characters
SHORT_FOLLOW_UP_WORDS = 5

SMALL_TALK = frozenset({"greeting", "thanks", "goodbye"})
ORDER_INTENTS = frozenset(
    {
        "track_order",
        "cancel_order",
        "change_shipping_address",
        "change_order",
        "get_refund",
        "track_refund",
        "check_invoice",
        "get_invoice",
    }
)
INFO_INTENTS = frozenset(
    {
        "check_payment_methods",
        "delivery_options",
        "delivery_period",
        "check_refund_policy",
        "check_cancellation_fee",
        "create_account",
        "delete_account",
        "edit_account",
        "recover_password",
        "registration_problems",
        "switch_account",
        "newsletter_subscription",
        "contact_customer_service",
        "place_order",
        "review",
        "payment_issue",
        "set_up_shipping_address",
    }
)
# Order intents that only read an order: several named in one message are each answered
LOOKUP_INTENTS = frozenset({"track_order", "track_refund", "check_invoice", "get_invoice"})
OPEN_STATUSES = ("pending", "paid")  # before shipment: cancel and address changes allowed
# The cancellation fee rule of OrderService (services/orders/rules.py; a unit test keeps the two
# equal), stated to the customer before they confirm. The fee actually charged is what
# CancelOrder returns, and that is what the confirmation reports.
FREE_CANCELLATION_HOURS = 24
CANCELLATION_FEE_PERCENT = 5
CANCELLATION_FEE_CAP_CENTS = 2000

# Orders offered when the customer has to pick one, per intent.
ELIGIBLE: dict[str, Callable[[orders_pb2.Order, dt.datetime], bool]] = {
    "cancel_order": lambda o, now: o.status in OPEN_STATUSES,
    "change_shipping_address": lambda o, now: o.status in OPEN_STATUSES,
    "change_order": lambda o, now: o.status in OPEN_STATUSES,
    # a delivered order with a return under way (refund pending / done) cannot be returned again
    "get_refund": lambda o, now: (
        o.status == "delivered"
        and _within_window(o, now)
        and o.refund_status not in ("pending", "done")
    ),
    "track_refund": lambda o, now: o.refund_status in ("pending", "done"),
    "track_order": lambda o, now: o.status != "cancelled",
    "check_invoice": lambda o, now: o.status != "cancelled",
    "get_invoice": lambda o, now: o.status != "cancelled",
}
# OrderService's refusal reasons (kefu-reason) → what the customer is told.
RETURN_REFUSALS = {
    "not_shipped": "not_delivered_open",
    "not_delivered": "not_delivered",
    "already_returned": "already_returned",
    "return_open": "already_returned",
    "order_cancelled": "already_returned",
    "return_window_closed": "window_passed",
}
_WHAT = {
    "cancel_order": "cancel",
    "change_shipping_address": "address",
    "change_order": "change",  # "can I change the size …" was told about addresses
    "get_refund": "return",
}
_HUMAN_REQUEST = re.compile(
    r"转人工|人工客服|真人|找人工|human agent|real person|talk to (a|an) (human|person|agent)|"
    r"speak to (a|an|someone|somebody)|live agent|customer service rep",
    re.IGNORECASE,
)
# When people are there ("几点有人工客服", "what time are your agents available?"): a question about
# the service hours, answered from the FAQ; it was handed to a person (maybe outside those hours)
_AGENT_HOURS = re.compile(
    r"几点|什么时候|哪个时间|时间段|工作时间|上班|下班|营业|在线时间|周末|节假日|24小时|"
    r"\bwhat time\b|\bhours\b|\bwhen\b|\bweekends?\b|\bholidays?\b|24/7|\bopen\b",
    re.IGNORECASE,
)
_RIGHT_NOW = re.compile(
    r"现在|马上|立刻|立即|赶紧|快点|\bnow\b|\basap\b|\bimmediately\b", re.IGNORECASE
)
_AGENT_WORD = re.compile(
    r"人工|客服|真人|\b(?:agents?|humans?|people|persons?|someone|support|customer service|staff)\b",
    re.IGNORECASE,
)


def asks_when_agents_work(text: str) -> bool:
    """A question about when people answer, not a request for one now."""
    return bool(
        _AGENT_HOURS.search(text)
        and _AGENT_WORD.search(text)
        and (looks_like_question(text) or "几点" in text or "几时" in text)
        and not _RIGHT_NOW.search(text)
    )


# "let me speak to your manager NOW" was read as out of scope; checked after the dispute words,
# so "找你们经理来，我要投诉" stays a dispute (higher priority)
_MANAGER_REQUEST = re.compile(
    r"(?:speak|talk|get|put me through|connect me)\s+(?:to|with|me)?\s*(?:your|a|the)\s+"
    r"(?:manager|supervisor|boss)|(?:找|叫|让|要)你们?的?(?:经理|主管|领导|老板)",
    re.IGNORECASE,
)
# "are you a bot?" / "你是机器人吗": answered (it was handed off, as "real person" matched
# _HUMAN_REQUEST, or told "I can't help with that") unless the customer also asks for a person
_ASKS_IF_BOT = re.compile(
    r"你是(?:不是)?(?:机器人|真人|人工|ai|人)|是(?:不是)?机器人|是真人吗|是人工吗|机器人吗|你是谁|"
    r"\bwho\s+(?:are|r)\s+(?:you|u)\b|"
    r"\b(?:are|r)\s+(?:you|u)\s+(?:a\s+|an\s+)?(?:real\s+)?(?:bot|robot|human|person|ai|machine|real)\b|"
    r"\bis\s+this\s+(?:a\s+|an\s+)?(?:bot|robot|real person|human|ai|machine)\b|"
    r"\b(?:am i|are we)\s+(?:talking|chatting|speaking)\s+(?:to|with)\s+(?:a\s+|an\s+)?"
    r"(?:bot|robot|machine|real person|human|person)\b",
    re.IGNORECASE,
)
# What the bot can do: "I can't help with that one" was the answer to "你能干什么". Only asked
# alone: "…the mug inside was cracked. What can you do about this?" is a complaint, not this.
_ASKS_WHAT_BOT_DOES = re.compile(
    r"你(?:能|会|可以)(?:干|做|帮我做|帮我干)?(?:什么|啥)|"
    r"\bwhat can (?:you|u) do\b(?!\s+(?:about|for|with|to)\b)|\bwhat do (?:you|u) do\b",
    re.IGNORECASE,
)
ASKS_WHAT_BOT_DOES_MAX_WORDS = 8  # Latin words; twice as many Han characters
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_WANTS_PERSON = re.compile(
    r"转人工|找人工|要人工|人工客服|找真人|要真人|\b(?:want|need|give me|let me|connect|transfer|"
    r"talk to|speak to|talk with|speak with|get me)\b",
    re.IGNORECASE,
)
_QUESTION = re.compile(
    r"[?？]|吗|呢|怎么|如何|什么|多少|哪|能不能|可不可以|是否|谁|"
    r"\b(how|what|when|where|which|why|can i|could i|do you|is there|are there)\b",
    re.IGNORECASE,
)
# Apologise only for a clearly negative message: "how do I leave a review" reads 0.54 negative to
# a model that learnt from reviews, and "Sorry for the inconvenience" before the answer is odd.
APOLOGY_NEGATIVE_SCORE = 0.6
# Below this ingest language confidence the conversation's language is kept (ingest gives 0.6
# to one or two Latin words, 0 to digits and emoji; any Han text and longer English score more).
SURE_LANGUAGE = 0.7
# How many turns after an order was looked up "it" / "这单" still means that order.
RECENT_ORDER_TURNS = 2
# Where the half of an address given first is kept until the other half comes (the key never
# reaches the order system: only the address fields are sent).
ADDRESS_PART = "part"
# At most this many questions of one message are looked up in the FAQ one by one.
MAX_QUESTIONS_PER_TURN = 3
# Intent templates that say what one FAQ entry says (the entry in more detail): one question's
# answer is never both.
_TEMPLATE_TWINS = {
    "delivery_period": "faq-delivery-time",
    "check_payment_methods": "faq-payment-methods",
    "check_cancellation_fee": "faq-cancel-fee",
    "check_refund_policy": "faq-return-policy",
    "recover_password": "faq-password-reset",
    "delete_account": "faq-account-delete",
    "create_account": "faq-account-register",
}
_THIS_ORDER = re.compile(
    r"\b(it|this|that|this one|that one|the order|this order|that order|same order)\b|"
    r"它|这单|那单|这个订单|那个订单|该订单|这笔|刚才|刚刚",
    re.IGNORECASE,
)
# A street address with its number: what a message that is only an address looks like
_STREET_ADDRESS = re.compile(
    r"[路街道巷弄里]\S{0,6}?\d+\s*号|\d+\s*号(?:楼|院)?|"
    r"\b\d+[a-z]?,?\s+(?:\w+\s+){1,3}(?:street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|"
    r"blvd|way|close|court|ct|place|pl)\b",
    re.IGNORECASE,
)
# The login name forgotten, not the password ("I forgot my username", "忘了用户名")
_FORGOT_LOGIN_NAME = re.compile(
    r"\b(?:forgot|forgotten|forget|can'?t remember|don'?t remember|lost)\s+(?:my\s+|the\s+)?"
    r"(?:user ?name|login(?: name| id)?|account name|account id)\b|"
    r"(?:忘了|忘记了?|不记得)(?:我的)?(?:用户名|账号名?|帐号名?|登录名|登录账号)",
    re.IGNORECASE,
)
# Signing up with a phone or e-mail that has an account already
_ALREADY_REGISTERED = re.compile(
    r"\balready (?:in use|registered|exists|taken|used|has an account|linked)\b|"
    r"已(?:经)?(?:被)?注册|已存在|被占用|已被(?:使用|绑定)",
    re.IGNORECASE,
)
# The customer asks for the other language ("can you reply in English please", "请说中文"): the
# reply is in that language already (ingest detects it); the request itself is acknowledged
_LANGUAGE_REQUEST = re.compile(
    r"\b(?:in|speak|use|reply in|answer in|talk in|write in) english\b|\benglish,? please\b|"
    r"\bdo you speak english\b|(?:说|讲|用|回复)中文|中文回复|中文(?:可以|行)吗",
    re.IGNORECASE,
)
# A short follow-up about the order just discussed: "那退款呢" / "and the refund?"
_FOLLOW_UP = re.compile(
    r"^(?:那|那么|那这个|那这单)\S{0,8}呢?[？?。.!！]*$|^\S{0,8}呢[？?]*$|"
    r"^(?:and|what about|how about)\s+(?:the\s+)?\w+(?:\s+\w+)?\s*[?.!]*$",
    re.IGNORECASE,
)
# The parcel's tracking number or courier asked for ("what was the tracking number again?", "which
# courier is it?", "快递单号多少"): right after an order answer, that order's tracking
_PARCEL_DETAIL = re.compile(
    r"\btracking (?:number|no\.?|code|id)\b|\b(?:which|what) (?:courier|carrier|delivery company|"
    r"shipping company|express company)\b|\bwho(?:'s| is) (?:delivering|shipping|bringing) it\b|"
    r"运单号|快递单号|物流单号|单号(?:是)?多少|哪家快递|什么快递|哪个快递|快递公司|哪家物流",
    re.IGNORECASE,
)
_OTHER_ORDER = re.compile(
    r"\b(another|other|different|all|orders|every)\b|另一|其他|别的|其它|所有|全部|哪些",
    re.IGNORECASE,
)
# A message that is just an order id ("7730192891", "是7730192891这个", "order #7730192891")
_BARE_ORDER_ID = re.compile(
    r"\s*(?:不是[，,]?\s*)?(?:是|就是)?(?:订单号?|order(?:\s+(?:id|number|no\.?))?)?\s*[:：#]?\s*"
    r"\d{10}\s*(?:这个|这单|那个|吧|呢|please|pls)?\s*[。.!！?？]?\s*",
    re.IGNORECASE,
)
# "When will my parcel arrive?" is delivery_period in the taxonomy (the Bitext convention), but
# the customer asks about an order they have, and its tracking answers that. A hypothetical
# ("if I order today, when will my order arrive?") is a question about delivery times.
# Narrower than refers_to_own: "how long to get to me" names no order, and is one too.
_OWN_PURCHASE = re.compile(
    r"\bmy\s+(?:\w+\s+){0,2}?(?:orders?|packages?|parcels?|purchases?|items?|deliver(?:y|ies)|"
    r"shipments?|stuff|things?|box|goods|products?|articles?)\b|"
    r"\b(?:what|the \w+|the \w+ \w+|everything) i (?:ordered|bought|purchased|placed|got)\b|"
    r"\bi (?:placed|made|put in|submitted) (?:an?|my) order\b|"
    r"我(?:前几天|前两天|昨天|上周|之前|刚)?下了(?:个|一个|一)?(?:单|订单)|"
    # traditional script and Cantonese too: "我嘅訂單幾時到" was answered with delivery times
    r"我(?:的|嘅|哋嘅)(?:订单|訂單|快递|快遞|包裹|货|貨|东西|東西|宝贝|寶貝|物流)|"
    r"我(?:买|買|订|訂|下单|下單|拍)(?:的|嘅)",
    re.IGNORECASE,
)
_HYPOTHETICAL_ORDER = re.compile(
    r"\bif (?:i|we) (?:order|buy|purchase|place)|\bbefore i (?:order|buy)|如果|要是|现在下单|今天下单|"
    r"现在买|今天买|下单的话|买的话",
    re.IGNORECASE,
)


# "为什么我的订单被取消了", "why was my order cancelled": a question about a cancelled order, not a
# request to cancel one (cancel_order 0.72 listed the orders that could still be cancelled)
_WHY_CANCELLED = re.compile(
    r"(?:为什么|为啥|怎么|咋)[^，,。？?!！]{0,10}(?:被|给|自动|就|都)[^，,。？?!！]{0,3}取消"
    r"|(?:订单|单子|这单|那单)[^，,。？?!！]{0,12}(?:被|给|自动)(?:系统)?取消了"
    r"|\bwhy\b[^.?!]{0,40}\b(?:cancell?ed|cancell?ing)\b"
    # "why did you cancel my order??" (cancel_order 0.94) offered to cancel another order
    r"|\bwhy (?:did|would|do) (?:you|u|they|the system|your system) cancel\b"
    r"|\b(?:order|purchase)\b[^.?!]{0,30}\b(?:was|got|has been|been|is)\s+(?:auto(?:matically|-)?\s*)?cancell?ed\b"
    r"|\bwho cancell?ed\b",
    re.IGNORECASE,
)


# "退货进度怎么查" (check_refund_policy 0.53) got the return policy: it asks where a return is
_RETURN_PROGRESS = re.compile(
    r"(?:退货|退款|售后|退换货|退的钱)(?:的)?(?:进度|进展|状态|处理到哪|到哪一步|到哪了)|"
    r"\b(?:return|refund)s?\b.{0,20}\b(?:status|progress)\b|"
    r"\b(?:status|progress) (?:of|on) (?:my |the )?(?:return|refund)s?\b",
    re.IGNORECASE,
)


def asks_return_progress(text: str) -> bool:
    return bool(_RETURN_PROGRESS.search(text))


def asks_why_cancelled(text: str) -> bool:
    """The message asks about an order that was cancelled (why, who), not to cancel one."""
    return bool(_WHY_CANCELLED.search(text))


def cancelled_refund_text(order: orders_pb2.Order, language: str) -> str:
    """What happened to the money of a cancelled order."""
    if _ts(order.paid_at) is None:
        return tpl.advice("never_paid", language)
    paid = tpl.money(order.total.currency, order.total.cents)
    if order.refund_status == "done":
        return tpl.advice("refund_returned", language, refund=paid)
    if order.refund_status == "pending":
        return tpl.advice("refund_on_way", language, refund=paid)
    return ""


def asks_when_own_order_arrives(turn: Turn) -> bool:
    """delivery_period about one of the customer's orders (an order id, "my parcel", "我买的")."""
    if turn.intent != "delivery_period" or _HYPOTHETICAL_ORDER.search(turn.text):
        return False
    return bool(turn.values("order_id")) or bool(_OWN_PURCHASE.search(turn.text))


_VAGUE_ORDER_HELP = re.compile(
    r"(?:hi|hello|hey)?[\s,!.]*(?:i\s+)?(?:need|want|have|got|would like)?\s*(?:some\s+)?"
    r"(?:help|a\s+problem|an?\s+issue|a\s+question|questions|problems|issues|trouble)\s+"
    r"(?:with|about|regarding|on)\s+(?:an?|my|the|one of my)\s+(?:order|purchase)s?[\s.!?]*"
    r"|(?:你好|您好|亲|在吗)?[，,\s]*(?:我的?|我买的)?(?:订单|东西|商品|宝贝)(?:有|出了?|遇到)(?:点|个|一些)?"
    r"问题了?[吗呢啊，,。！!]*(?:怎么办|帮我看看|帮忙看看)?[。！!？?]*",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W_]")  # a letter, digit or CJK character
# A pick and nothing else ("第一个", "2", "the first one"); "第一个怎么买" asks something
_BARE_PICK = re.compile(
    r"(?:就是|是|要|选)?第?[一二三四五六七八九十两\d]{1,2}(?:个|项|单|条)?(?:吧|呀|啊|哈|那个)?[。.!！~～]*|"
    r"(?:the\s+)?(?:first|second|third|fourth|fifth|last|latest|most recent|\d{1,2}(?:st|nd|rd|th)?)"
    r"(?:\s+one)?(?:\s+please)?[.!]*",
    re.IGNORECASE,
)
# Answers to "which items?" sent when the bot asks why: no reason to record
_NO_REASON = re.compile(
    r"^(?:全部|都退|所有|第?[一二三1-3][个件]|all(?: of them)?|both|everything|"
    r"(?:the )?(?:first|second|third|last)(?: one)?|[1-3]|ok|好的?|嗯+|"
    # "只退第一件" / "just the first one" says which item, not why (it was filed as the reason)
    r"(?:只|就|仅)?(?:退|要退)?(?:第?[一二三1-3][个件样]|这[个件]|那[个件])(?:就行|就好|吧)?|"
    r"(?:only|just) (?:the )?(?:first|second|third|last|one)(?: one| item)?)[.!。！]*$",
    re.IGNORECASE,
)
# A request stated as a bare command ("取消订单", "cancel order"): in a customer's chat it is about
# their own order, not the FAQ's how-to ("怎么取消订单" scored 0.99 and answered "取消订单")
_BARE_REQUEST = re.compile(
    r"(?:我?(?:想|要|需要|想要))?(?:请|麻烦)?(?:帮忙|帮我)?(?:(?:取消|退款|退货|退钱)(?:一下)?(?:订单)?|"
    r"(?:查|查询)(?:一下|下)?(?:物流|快递|订单)|(?:改|修改|更改)(?:一下|下)?(?:收货)?地址|"
    # "物流" alone got the courier FAQ (0.942): the customer's parcel is meant
    r"(?:我的)?(?:物流|快递|包裹)(?:信息|状态|进度)?(?:呢|啊)?|"
    r"(?:my )?(?:tracking(?: info)?|(?:delivery|order|shipping|parcel|package) status)|"
    r"(?:收货)?地址(?:改|修改|换)(?:一下|下)|(?:开|要)(?:一下|张)?发票|"
    r"cancel(?: (?:an|the|my) order)?|cancel order|refund|return(?: an? item)?|"
    r"track(?: (?:an|the|my) order)?|track order|(?:change|update) (?:the |my )?(?:shipping |delivery )?"
    r"address|invoice)"
    r"(?:\s*(?:please|pls|plz|吧|啊|呀|谢谢))?[\s。.!！~～]*",
    re.IGNORECASE,
)
# "track my headphones order" / "查一下耳机那个订单": a tracking request, whatever else it names
_TRACK_COMMAND = re.compile(
    r"^\s*(?:(?:please|pls|can you|could you)\s+)?track\s+(?:my|the|this|that|an?)\b.{0,30}?"
    r"\b(?:order|package|parcel|delivery|shipment)s?\b|"
    r"^\s*(?:帮我|麻烦)?(?:查|查询|查看)(?:一下|下)?.{0,10}(?:订单|物流|快递|包裹)",
    re.IGNORECASE,
)
# "where's my <item>" / "我的<item>到哪了": asks after one of the customer's orders
_WHERE_IS_MY = re.compile(
    r"\bwhere(?:'?s|\s+is|\s+are|'re)\s+my\b|"
    r"我的.{1,12}?(?:到哪|在哪|怎么还没到|还没到|还没收到|什么时候到)",
    re.IGNORECASE,
)
_GOODS = re.compile(
    r"\b(?:stuff|package|parcel|order|item|purchase|things?|goods|shipment)\b|货|包裹|东西|宝贝|订单",
    re.IGNORECASE,
)
# "track 1118256606" / "查一下1118256606": with an order id, a look-up of that order
_TRACK_WORD = re.compile(
    r"\btrack(?:ing)?\b|\bstatus\b|\bcheck\b|\bupdate on\b|查|物流|快递|到哪|发货了吗",
    re.IGNORECASE,
)
# "so what can I do then?" / "那怎么办": right after a request was refused, its options again
_WHAT_NOW = re.compile(
    r"\bwhat (?:can|should|could|do) i do\b|\bwhat now\b|\bwhat are my options\b|"
    r"那(?:我)?(?:该)?怎么办|那咋办|我该怎么办|有什么办法|那怎么弄",
    re.IGNORECASE,
)
# "sorry what?" / "没看懂": the last answer again
_PARDON = re.compile(
    r"[\W_]*(?:sorry\s*\?|pardon|huh|what|come again|say (?:that|it) again|(?:can you )?repeat (?:that|it)|"
    r"i don'?t (?:understand|get it)|what do you mean|i didn'?t (?:get|understand) (?:that|it)|"
    r"(?:sorry|pardon)[, ]+what|what did you say)(?: please)?[\W_]*|"
    r"[\W_]*(?:啥|什么|蛤|嗯)[？?]+|(?:你说的是)?(?:什么|啥)意思[？?。!！]*|"
    r"(?:我)?(?:没|看不|听不)(?:看|听)?(?:懂|明白)(?:了|啊|呀|你的意思)?[？?。!！]*|"
    r"(?:能|可以)?再说一遍(?:吗)?[？?。!！]*",
    re.IGNORECASE,
)
# "不对 是另一个" / "no, the other one": another of the orders offered than the one served
_OTHER_ONE = re.compile(
    r"另(?:外)?一(?:个|单|笔)|另外(?:那|的)(?:个|单|笔)?|(?:其他|别)的那(?:个|单)|"
    r"\bthe other (?:one|order)\b|\ba different (?:one|order)\b|\bnot (?:that|this) one\b",
    re.IGNORECASE,
)
# "and the one before that?" / "上一个呢" right after the newest order was served
_PREVIOUS_ORDER = re.compile(
    r"\b(?:the )?one before (?:that|it|this)\b|\bprevious (?:one|order)\b|\bthe one before\b|"
    r"\bolder one\b|上一(?:个|单|笔)|前一(?:个|单|笔)|再(?:往)?前(?:面)?(?:一|那)(?:个|单|笔)",
    re.IGNORECASE,
)
# "thanks but that didn't solve anything" / "谢谢 但还是没解决": not thanks, the problem is open
_NOT_RESOLVED = re.compile(
    r"\b(?:didn'?t|did not|doesn'?t|does not|not|hasn'?t|has not|won'?t)\s+"
    r"(?:solve|help|fix|answer|work|resolve)|\bnot (?:solved|resolved|fixed|helpful)\b|"
    r"没(?:有)?(?:解决|帮上|帮到|用)|不管用|还是不行|还是没(?:解决|用|到)|问题还在",
    re.IGNORECASE,
)
# "great, another delay. thanks a lot" (thanks 0.99, positive) got "You're welcome!"
_SARCASTIC_THANKS = re.compile(
    r"\bthanks? (?:you )?for nothing\b|\b(?:another|yet another|more|again a) (?:delay|excuse|"
    r"mistake|problem)s?\b|\b(?:useless|ridiculous|pathetic|worst)\b|呵呵|无语|服了|又(?:延迟|晚了|没到)|"
    r"谢谢你们?(?:啊)?(?:的)?(?:效率|速度)",
    re.IGNORECASE,
)
# A lead-in with the question still to come ("那个", "我想问下", "quick question")
# The customer will refuse the parcel at the door ("ok then I'll just refuse the delivery", "那我
# 直接拒收吧"), usually after a shipped order could not be cancelled: how refusing works, not the
# cancellation refused again. Past tense ("我拒收了") is a refund question and is not matched.
_WILL_REFUSE = re.compile(
    r"\b(?:i'?ll|i will|i'?m going to|gonna|then i|i can|can i|could i|i want to|let me|i'?d)\s+"
    r"(?:just |simply |probably )?refuse\b|"
    r"(?:那|就|直接|我要|我会|可以|能)(?:我)?(?:就|直接)?拒收(?!了)",
    re.IGNORECASE,
)
# Thanks that also ends the chat ("thanks bye", "好的谢谢 没问题了"): a goodbye, not "anything else?"
_CLOSING = re.compile(
    r"\b(?:bye|goodbye|see (?:you|ya)|that'?s (?:all|it)|nothing else|all good now)\b|"
    r"拜拜|再见|没问题了|没有了|没别的了|没其他(?:的)?了|就这些|没事了",
    re.IGNORECASE,
)
_FILLER = re.compile(
    r"(?:那个|这个|嗯+|呃+|额+|哎|诶|我想问下|我想问一下|想问一下|问一下|问下|请问一下|我想咨询一下|"
    r"咨询一下|我有个问题|有个问题|我想问个问题|um+|uh+|hm+|so+|well|quick question|i have a question|"
    r"can i ask (?:you )?(?:something|a question)|"
    # "能帮我个忙吗" (out of scope 0.73) was "I can't help with that one"
    r"(?:你|您)?(?:能|可以)(?:帮|帮帮)我(?:个忙|一下|吗)?吗?|帮(?:我)?个忙(?:吗|呗)?|求助|在线等|"
    r"(?:can|could) (?:you|u|someone) help(?: me)?(?: please| pls)?|help(?: me)?(?: please| pls)?|"
    r"i need (?:some )?help)[\s,，。.!！?？~～…]*",
    re.IGNORECASE,
)
# Words that say why an item goes back: with them the request itself is the reason
_RETURN_REASON = re.compile(
    r"质量|坏了|坏的|破了|破损|有洞|杂音|太差|很差|不合适|尺码|偏大|偏小|太大|太小|不喜欢|不想要|"
    r"发错|错发|少发|漏发|过期|变质|掉色|褪色|划痕|瑕疵|假货|不符|色差|起球|开线|漏水|不能用|故障|"
    r"生锈|锈|异味|发霉|碎了|裂了|缺件|少了|货不对|发来的|不是我买的|不是我要的|有个洞|破洞|坏掉|用不了|没法用|"
    r"\b(?:broke|broken|damaged|defective|faulty|cracked|scratched|ripped|torn|stained|expired|rusty|"
    r"rusted|rust|smells?|moldy|mouldy|leaks?|leaking|shattered|missing|"
    r"doesn'?t fit|does not fit|don'?t fit|do not fit|too (?:big|small|large|tight|loose)|"
    r"wrong (?:size|item|colou?r|product|thing|model|one)s?|not what i (?:ordered|bought)|hole|"
    r"changed my mind|(?:poor|bad) quality|not as described|(?:stopped|doesn'?t|not) work(?:ing)?|"
    r"don'?t (?:like|want|need) it)\b",
    re.IGNORECASE,
)
# A problem with goods already received (wrong, damaged, broken, defective): an after-sales
# request. "you sent me the wrong item" was change_order and offered unshipped orders to change;
# "快递到了但是屏幕碎了" was track_order. Missing items are not here: nothing to send back, and the
# FAQ's answer (check for a second parcel, then ask for the rest) serves them.
# what shoppers say of a faulty device, in Chinese
_FAULT = (
    r"没(?:有)?声音|不响|杂音|充不(?:进|上)电|开不了机|开不开机|不开机|不亮|失灵|没反应|连不上|"
    r"坏了|不能用|用不了|不工作"
)
_RECEIVED_PROBLEM = re.compile(
    r"发错|错发|货不对|发来的(?:是|不是|东西|货)|收到的?.{0,10}(?:不对|不是我|坏了|坏的|破了|碎了|裂了|有(?:个|一个|几个)?洞)|"
    r"(?:屏幕|屏|外壳|盒子里的|东西|商品|宝贝|衣服|杯子|碗|盘子).{0,4}(?:碎了|裂了|坏了|破了)|"
    r"有(?:个|一个|几个|条|一条)?(?:洞|破洞|裂缝|裂痕|裂纹)|不是我(?:买|要|订)的|质量问题|"
    r"质量(?:太|很|非常|特别)?(?:不好|差|不行|有问题)|\b(?:poor|bad|terrible|awful) quality\b|"
    r"\bquality (?:is )?(?:so |really |very )?(?:poor|bad|terrible|awful)\b|"
    r"\b(?:sent|shipped|gave|delivered)\s+(?:me\s+)?(?:the\s+|a\s+)?wrong\b|"
    r"\bwrong\s+(?:item|size|colou?r|product|thing|model|one)s?\b(?:\s+(?:was\s+)?(?:sent|delivered|arrived))?|"
    r"\bnot what i (?:ordered|bought|paid for)\b|"
    r"\b(?:arrived|came|is|was|are|were|got it)\s+(?:\w+\s+)?(?:damaged|broken|cracked|shattered|"
    r"defective|faulty|torn|ripped|smashed|dented)\b|"
    r"\b(?:damaged|broken|cracked|shattered|defective|faulty)\s+(?:item|product|screen|box|package|parcel)\b|"
    r"\b(?:has|had|with)\s+(?:a|some)\s+(?:hole|crack|tear)s?\b|\bstopped working\b|"
    # a fault of something bought: "买的耳机左耳没声音" was out of scope
    r"(?:买的|收到的|到的|刚到的).{0,12}?(?:" + _FAULT + r")|"
    r"\b(?:i )?(?:bought|got|ordered|received)\b.{0,40}?\b(?:no sound|won'?t (?:turn on|charge|power on)|"
    r"does(?:n'?t| not) (?:turn on|charge|power on))\b",
    re.IGNORECASE,
)
# Something bought that does not fit: a return reason, not a fault
_SIZE_PROBLEM = re.compile(
    r"(?:买的|收到的|到的|这件|衣服|鞋子?|裤子).{0,10}?(?:太大|太小|偏大|偏小|不合身|穿不了|穿不下|尺码不对)|"
    r"\b(?:is|are|was|were|it'?s|they'?re)\s+(?:way\s+|much\s+|a bit\s+|too\s+)?too\s+"
    r"(?:big|small|large|tight|loose|short|long)\b|\b(?:does(?:n'?t| not)|do(?:n'?t| not)) fit\b",
    re.IGNORECASE,
)
# Said of a product the message names ("耳机坏了", "the headphones broke"); alone, "坏了" may be
# the app or the website.
_PRODUCT_BROKEN = re.compile(
    r"坏了|坏掉了|碎了|裂了|破了|不能用了|用不了了|没法用了|"
    + _FAULT
    + r"|\bbroke\b|\b(?:is|are)\s+broken\b|"
    r"\bno sound\b|\b(?:won'?t|does(?:n'?t| not)) (?:turn on|charge|power on)\b|"
    r"\b(?:does|do)n'?t work\b|\b(?:is|are)n'?t working\b",
    re.IGNORECASE,
)
# Answers to a customer who declined or dropped something: "先不改了" reads negative to the
# sentiment model, but "Sorry about the trouble. OK, the order stays as it is" is odd.
# (nor a goodbye: "没事了 拜拜" reads negative, and "非常抱歉给您带来不便。再见" is odd)
_NO_APOLOGY_TEMPLATES = frozenset({"kept", "dropped", "acknowledged", "goodbye"})
# read confidently, these win over a request for suggestions in the same message
_NOT_FOR_SUGGESTIONS = frozenset({"complaint", "contact_human_agent", "payment_issue"})
_APOLOGY_OPENING = re.compile(
    r"\s*(?:非常|很|十分|实在)?(?:抱歉|对不起|不好意思)|\s*(?:we'?re|i'?m|we are|i am)\s+"
    r"(?:so |very |really |truly )?sorry|\s*(?:sorry|apologies|our apologies)\b",
    re.IGNORECASE,
)
# An exchange after delivery ("我要换货", "can I exchange it for a bigger size"): no order
# action for it, the after-sales page does it
_EXCHANGE = re.compile(r"换货|\bexchange\b", re.IGNORECASE)
# A size, colour or quantity wanted for an order ("I want a bigger size", "换个大一码的", "颜色改成黑色"):
# customers change those themselves under My Orders; the bot changes only the address.
_VARIANT_CHANGE = re.compile(
    r"\b(?:bigger|smaller|larger|different|another|other)\s+(?:size|colou?r|one)\b|"
    r"\b(?:change|switch|swap)\b.{0,20}\b(?:size|colou?r|quantity|qty)\b|"
    r"\bsize\s+(?:up|down)\b|\b(?:size|colou?r|quantity)\s+to\b|"
    r"(?:换|改)(?:成|为|个|一下)?.{0,4}(?:大|小)(?:一|1)?(?:号|码)|(?:大|小)(?:一|1)(?:号|码)|"
    r"(?:尺码|码数|颜色|数量|规格|型号)(?:帮我)?(?:换|改)|(?:换|改)(?:一?个|一下)?(?:尺码|码数|颜色|数量|规格)",
    re.IGNORECASE,
)
# "我想return这个item" / "I want to return this": a return asked for, not the policy
_WANTS_RETURN = re.compile(
    r"我(?:想|要)(?:退|return)|(?:想|要)退(?:货|掉|这个|了)|"
    # shoppers' typos of "return" too ("i want to retrun the running shoes")
    r"\bi(?:'d like| would like| want| wanna| need) to (?:return|retrun|retun|retrn|reutrn)\b|"
    r"\breturn (?:this|it|these|them)\b",
    re.IGNORECASE,
)
# The intents that already read such a message right: a return, a refund, a cancellation, a
# person asked for, a general question about returns.
_AFTER_SALES_AS_READ = frozenset(
    {"get_refund", "track_refund", "cancel_order", "contact_human_agent", "check_refund_policy"}
)
# "都一个星期了还没发货" / "my parcel still hasn't arrived": which of the orders can be meant
_NOT_SHIPPED = re.compile(
    r"(?:还|怎么|仍然|一直)(?:没|不)(?:有)?发(?:货|出)|没发货|不发货|(?:什么时候|啥时候|几时|何时|多久)发货|"
    r"\bwhen (?:will|do|does|are) (?:you|it|they|my \w+) (?:be )?(?:ship|shipped|dispatched|sent)\b|"
    r"\b(?:has ?n[o']?t|have ?n[o']?t|not|never|still not)\s+(?:been\s+)?(?:shipped|sent|dispatched)\b",
    re.IGNORECASE,
)
# Asking to hurry the shipping is about the customer's own unshipped orders, whatever intent
# was read ("麻烦快点发货好吗" read as delivery_options 0.84 got the delivery options)
_HURRY_SHIPPING = re.compile(
    r"催(?:一下|一催|下)?(?:发货|快递|物流)|(?:尽快|快点|赶紧|早点)(?:给我)?发(?:货)?|"
    r"\b(?:hurry|speed|rush)\b.{0,20}\b(?:ship|dispatch|send)|\bship (?:it )?(?:faster|sooner|asap)\b",
    re.IGNORECASE,
)
# Hurrying in general ("能不能快点", "催一下", "can you speed it up"): said right after a shipped
# order's tracking it is about the parcel already with the courier
_HURRY = re.compile(
    r"快点|快一点|快些|加快|加急|催(?:一下|一催|下|件|单)?|尽快|赶紧|急用|早点到|"
    r"\b(?:hurry|speed (?:it |this |that )?up|faster|sooner|asap|rush|expedite)\b",
    re.IGNORECASE,
)
# "can you send it to my email" right after the invoice answer is about the invoice (it scored
# 0.928 on the registration entry and got the account template)
_BY_EMAIL = re.compile(r"邮箱|邮件|\be-?mail", re.IGNORECASE)
_INVOICE_ENTRIES = frozenset({"faq-invoice-issue", "faq-invoice-change"})
# An order id corrected after "I can't find order …"
_CORRECTED_ID = re.compile(
    r"\bwrong (?:number|id|order|one)\b|\btypo\b|\bi mean|\bi meant\b|\bsorry\b|\bmy bad\b|"
    r"\boops\b|\bshould be\b|\bit'?s\b|\bactually\b|\btry\b|"
    r"打错|写错|输错|填错|不好意思|抱歉|应该是|是这个|换成|重新|再查|我看错",
    re.IGNORECASE,
)
# Someone else's order ("这是我朋友的订单", "it's my wife's order"): only the account it was placed
# with can see it; said after "not one of your orders" it got the customer's own list
_SOMEONE_ELSES = re.compile(
    r"(?:朋友|家人|老婆|老公|妈妈?|爸爸?|父母|同事|别人|室友|家里人|他|她)的(?:订单|单子|账号|账户|快递|包裹)|"
    r"(?:用|是)(?:朋友|家人|老婆|老公|我妈|我爸|别人|同事)的(?:账号|账户|号)|"
    r"\b(?:my|a) (?:friend|wife|husband|mom|mum|mother|dad|father|partner|sister|brother|"
    r"colleague|son|daughter|boyfriend|girlfriend)'?s (?:order|account|parcel|package)\b|"
    r"\bsomeone else'?s (?:order|account)\b|\b(?:on|from) (?:his|her|their) account\b",
    re.IGNORECASE,
)
# "那怎么申请" / "how do I do that?" right after an FAQ answer that says how: that answer again
_HOW_FOLLOW_UP = re.compile(
    r"^(?:那|那么|所以)?(?:要|该|应该)?(?:怎么|如何)(?:申请|弄|操作|办|做|搞|处理)(?:呢|啊|呀)?[?？]*$|"
    r"^(?:那)?(?:在)?哪(?:里|儿)?(?:申请|弄|操作|办)(?:呢|啊)?[?？]*$|"
    r"^(?:ok |so |and )?(?:how|where) (?:do|can) i (?:do|apply for|request|get) (?:that|it|this)\??$|"
    r"^(?:ok |so |and )?how\??$",
    re.IGNORECASE,
)
_NOT_ARRIVED = re.compile(
    r"(?:还|怎么|仍然|一直)(?:没|不)(?:有)?(?:到|收到|送到|送来)|没收到|物流.{0,4}没(?:有)?(?:更新|动)|"
    r"\b(?:tracking|status) (?:has ?n[o']t|hasn't|not|never) (?:been )?(?:updated|changed|moved)\b|"
    r"\b(?:has ?n[o']?t|have ?n[o']?t|did ?n[o']?t|not|never|still not)\s+(?:yet\s+)?(?:arrived|"
    r"arrive|received|receive|come|came|shown up|show up|turned up|been delivered|got(?:ten)? it)\b|"
    r"\bnot here yet\b|\b(?:is|isn'?t|still) not here\b",
    re.IGNORECASE,
)
# Topics the FAQ answers better than an order flow: a price drop after buying (price
# protection; read as change_order or get_refund) and an item missing from a parcel (check for a
# second parcel first; "one item is missing from my package" was change_order)
_FAQ_FIRST_TOPICS = re.compile(
    r"降价|差价|价保|价格保护|\bprice (?:dropped|drop|went down|protection|difference)\b|"
    r"\b(?:cheaper|on sale) (?:now|right after|after i|since)\b|"
    r"少发|漏发|少了一件|少了一个|缺了一件|缺件|\b(?:is|are|was|were) missing\b|\bmissing (?:item|part|piece)s?\b|"
    # where a refund goes is the same for every order ("will my refund go back to my card?")
    # (not "退款到哪一步了" / "退款到哪了": those ask how far it got, for one order)
    r"退(?:款|钱)?(?:会|是|能)?(?:退)?到哪(?:里|儿|个)|退回(?:到)?(?:哪|我的|原)|原路(?:退|返)回|"
    r"\b(?:refund|money)\b.{0,12}\b(?:go|goes|going|sent|paid) back to\b|\brefunded to (?:my|the)\b|"
    # correcting an invoice, or one for a company, is the same steps for every order
    # ("发票抬头写错了能改吗", "能开发票给公司吗")
    r"发票[^，,。？?]{0,4}(?:给|开给|开成)[^，,。？?]{0,4}(?:公司|单位|企业)|(?:公司|单位|企业)抬头|"
    r"\b(?:company|business|corporate)\s+invoice\b|\binvoice\b.{0,20}\b(?:company|business)\b|"
    r"发票[^，,。？?]{0,8}(?:写错|填错|开错|错了|修改|更改|换开|重开)|(?:重开|换开|重新开)发票|"
    r"\binvoice\b.{0,30}\b(?:wrong|incorrect|mistake|reissue|re-issue)|"
    r"\b(?:reissue|re-issue|correct|change|fix)\b.{0,12}\binvoice\b",
    re.IGNORECASE,
)
_COMPANY_INVOICE = re.compile(
    r"(?:公司|单位|企业)(?:的)?(?:抬头|名称|名字)|专票|专用发票|税号|抬头.{0,6}(?:公司|单位|企业)|"
    r"\b(?:company|business|corporate)(?:'s)? (?:name|title|details|invoice)\b|"
    r"\btax (?:id|number|no)\b",
    re.IGNORECASE,
)
# A topic's words that say the message is about something else: "我不在家 能改地址吗" scored 0.916
# on the missed-delivery entry and is an address change
_TOPIC_UNLESS: dict[str, re.Pattern[str]] = {
    "faq-missed-delivery": re.compile(r"地址|\baddress\b", re.IGNORECASE),
    # a payment that failed, was taken twice, paid back or split is a problem or another entry
    "faq-payment-methods": re.compile(
        r"失败|扣(?:款|了|钱)|付不了|付不出|用不了|不能用|没反应|退(?:款|回|钱)|到账|分期|绑定|解绑|换|改|"
        r"\bchange|\bswitch|"
        r"\bfail|\bdeclin|\bcharged\b|\brefund|\berror\b|\bnot work|\bdoesn'?t work|\bwon'?t\b|"
        r"\binstal?l?ments?\b|\bsaved?\b|\bremove\b|\bsplit\b",
        re.IGNORECASE,
    ),
}
# Topics a rule recognises and one FAQ entry answers, whatever intent was read ("can I add a gift
# message to my order?" is change_order 0.93, "do you price match?" delivery_options 0.86). The
# message must still score on that entry, at TOPIC_FAQ_THRESHOLD instead of the general one.
_FAQ_TOPIC_ENTRIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        # read as delivery_options they got the delivery-speed template; as track_order, a list
        re.compile(
            r"不在家|没人(?:在家|收)|快递柜|驿站|丰巢|门卫|代收|改天(?:再)?送|指定(?:送货|配送)?时间|"
            r"\b(?:not|wasn'?t|won'?t be|nobody|no one)(?: at)? home\b|\bmissed (?:the )?(?:delivery|courier)\b|"
            r"\b(?:parcel )?lockers?\b|\bdoorman\b|\breception\b|\bredeliver|\brearrange (?:the )?delivery\b",
            re.IGNORECASE,
        ),
        "faq-missed-delivery",
    ),
    (
        re.compile(
            r"合并|一起(?:发|寄|送)|分(?:开|成)?(?:了)?(?:好)?几个包裹|\bcombine\b|\bmerge\b|"
            r"\b(?:ship|send)\b.{0,30}\btogether\b|\b(?:one|same|single) (?:box|parcel|package|shipment)\b|"
            r"\bseparate (?:parcels|packages|boxes)\b",
            re.IGNORECASE,
        ),
        "faq-combine-orders",
    ),
    (
        re.compile(
            r"自提|自取|门店|实体店|线下店|到店|\bpick (?:it |the order |them )?up (?:myself|in person|in store)\b|"
            r"\b(?:physical|retail|local) (?:store|shop)s?\b|\bcollect (?:it )?(?:myself|in store)\b",
            re.IGNORECASE,
        ),
        "faq-self-pickup",
    ),
    (
        re.compile(
            # not "how do I use …": "how do I use this coupon" scored 0.897 on the manual
            r"说明书|使用说明|使用教程|\bmanual\b|\buser guide\b|\binstructions\b",
            re.IGNORECASE,
        ),
        "faq-product-manual",
    ),
    (
        re.compile(
            r"确认(?:短信|邮件|通知)|下单成功|订单(?:提交)?成功了?吗|"
            r"\bconfirmation (?:e-?mail|sms|text|message)\b|\border (?:confirmation|go through)\b|"
            r"\b(?:did|has) my (?:order|purchase) go (?:through|thru)\b",
            re.IGNORECASE,
        ),
        "faq-order-confirmation",
    ),
    (
        # "退货地址发我一下" (get_refund 0.52) right after a return was filed tried to file it again
        re.compile(
            r"退货地址|寄回(?:的)?地址|退回(?:的)?地址|寄到哪|寄回哪|退到哪个地址|"
            r"\breturn(?:s)? address\b|\bwhere (?:do|should|can) i (?:send|ship|post|mail) (?:it|them|the \w+)"
            r" back\b|\baddress (?:to|for) (?:send|ship|return)",
            re.IGNORECASE,
        ),
        "faq-return-how",
    ),
    (
        # "app一直闪退 打不开" (registration_problems 0.66) got the advice for a missing code
        re.compile(
            r"(?:app|软件|网站|页面|网页|客户端|应用)[^，,。.!?？]{0,10}(?:闪退|打不开|卡死|卡住|加载|崩|白屏|"
            r"进不去)|闪退|\b(?:app|website|site|page)\b.{0,30}\b(?:crash\w*|won'?t (?:load|open)|"
            r"(?:is )?not (?:loading|opening|working)|freez\w*|keeps? (?:spinning|loading))",
            re.IGNORECASE,
        ),
        "faq-app-problems",
    ),
    (
        # "订单X能改成次日达吗" (change_order 0.93) was told where to change size and colour
        re.compile(
            r"(?:改成|换成|升级(?:成|到|为)?|改为)(?:次日达|加急|特快|快一点的)|次日达|"
            r"\b(?:upgrade|switch|change|move)\b.{0,30}\b(?:express|next[- ]day|overnight|faster "
            r"(?:shipping|delivery))\b|\bexpedite",
            re.IGNORECASE,
        ),
        "faq-express-delivery",
    ),
    (
        # "第二个有货吗" after suggestions got the delivery template (delivery_options 0.92)
        re.compile(
            r"有货|有没有货|还有货|现货|库存|缺货|断货|补货|到货|"
            r"\b(?:in|out of|back in) stock\b|\bsold out\b|\brestock|\bavailable\b.{0,10}\?",
            re.IGNORECASE,
        ),
        "faq-out-of-stock",
    ),
    (
        # "what if I buy 50 of them, bulk discount?" was a clarify: prices are as shown
        re.compile(
            r"\bbulk\b|\bwholesale\b|\bvolume discount|\bquantity discount|\bbuy (?:in )?bulk\b|"
            r"批发|团购|量大|大量购买|买得多|买多了?(?:能|可以|有)?(?:便宜|优惠|打折)",
            re.IGNORECASE,
        ),
        "faq-price-bargain",
    ),
    (
        # "do you accept paypal?" scored 0.918 on the payment entry and got the template
        re.compile(
            r"\b(?:paypal|klarna|apple ?pay|google ?pay|alipay|wechat ?pay|union ?pay|visa|"
            r"master ?card|amex|american express|debit card|credit card)\b|"
            r"花呗|支付宝|微信支付|银联|信用卡|借记卡|储蓄卡|云闪付",
            re.IGNORECASE,
        ),
        "faq-payment-methods",
    ),
    (
        # "Do you ship to Hong Kong?" scored 0.929 on the shipping-abroad entry
        re.compile(
            r"\b(?:ship|deliver|send|post)(?:ping)?\b.{0,20}\b(?:abroad|overseas|internationally|"
            r"hong ?kong|macau|macao|taiwan|singapore|malaysia|japan|korea|australia|canada|"
            r"the (?:us|usa|uk)|europe|germany|france)\b|"
            r"(?:寄|发|送|邮|配送)(?:到|去|往)?(?:国外|海外|境外|香港|澳门|台湾|美国|日本|韩国|新加坡|"
            r"马来西亚|澳洲|澳大利亚|加拿大|英国|欧洲)",
            re.IGNORECASE,
        ),
        "faq-international-shipping",
    ),
    # "I need a VAT invoice with my company name for <id>" got the order's invoice number: the
    # better scoring of issuing and re-issuing ("能开增值税专用发票吗" is no re-issue)
    (_COMPANY_INVOICE, "faq-invoice-change"),
    (_COMPANY_INVOICE, "faq-invoice-issue"),
    (
        re.compile(
            r"\bprice[- ]?match|\bmatch (?:the |their |a |your |other )?(?:\w+'?s? )?prices?\b|"
            r"\b(?:cheaper|lower|less)\b.{0,24}\b(?:on|at|in|from) (?:another|other|a different)\b|"
            r"比价|别家|(?:其他|别的)(?:平台|店|网站|商家)",
            re.IGNORECASE,
        ),
        "faq-price-match",
    ),
    (
        re.compile(
            r"\bwithout (?:sending|returning|shipping|posting)\b|\bkeep (?:it|the item|the product)\b"
            r".{0,30}\brefund|仅退款|只退款|不退货|不寄回|不用寄回|不退回",
            re.IGNORECASE,
        ),
        "faq-refund-without-return",
    ),
    (
        # a lost parcel ("my order is missing") is no missing item: not matched
        re.compile(
            r"\b(?:an?|one|1|some|another) (?:item|thing|piece|part|accessory|product)s? "
            r"(?:is |was |are |were )?missing\b|\bmissing from (?:the|my) (?:box|parcel|package|"
            r"order|delivery)\b|少发|漏发|少了(?:一|1)|缺(?:了)?一?件|只收到(?:了)?(?:一|1|部分)",
            re.IGNORECASE,
        ),
        "faq-missing-item",
    ),
    (
        # "能不能改成顺丰" after tracking was read as an address change of the shipped order
        re.compile(
            r"(?:改|换)(?:成|用)?(?:顺丰|京东|邮政|圆通|中通|申通|韵达|极兔|EMS|别的快递|其他快递)|指定快递|"
            r"(?:发|用)(?:的)?(?:什么|哪家|哪个)快递|\b(?:which|what) (?:courier|carrier|delivery company|"
            r"shipping company)s? do you\b|\b(?:ship|send) (?:it |them )?(?:with|by|via) (?:dhl|ups|fedex|"
            r"sf|ems|jd)\b|\b(?:choose|pick|change) the (?:courier|carrier)\b",
            re.IGNORECASE,
        ),
        "faq-courier",
    ),
    (
        # "do you have this jacket in blue" got the delivery options
        re.compile(
            r"\b(?:do you have|have you got|is there|does (?:it|this|that|the \w+) come|can i get) "
            r"(?:(?:it|this|that|these|one|the \w+|this \w+|that \w+) )?(?:in|with) (?:a |an )?"
            r"(?:(?:different|other|another|bigger|smaller|larger) )?(?:colou?rs?|sizes?|blue|red|black|"
            r"white|green|pink|gr[ae]y|yellow|purple|brown|beige|navy|small|medium|large|xs|xl|xxl)\b|"
            r"有(?:没有)?(?:别的|其他|其它)(?:颜色|尺码|码数|款式)|有没有.{0,4}(?:色|码)(?:的)?|"
            r"有.{0,4}(?:色|码)(?:的)?吗|(?:颜色|尺码)还有(?:吗|货)",
            re.IGNORECASE,
        ),
        "faq-product-variants",
    ),
    (
        # "are there any promotions going on right now?" got the newsletter settings
        re.compile(
            r"\b(?:any|current|upcoming|next|your) (?:sales?|promotions?|promos?|deals|offers)\b|"
            r"\bpromotions? (?:going on|on now|right now|this week)\b|"
            r"有(?:什么|没有|啥)(?:优惠|促销|打折)?活动|大促|促销活动|最近(?:有)?(?:什么|啥)?(?:优惠|活动)",
            re.IGNORECASE,
        ),
        "faq-promotions",
    ),
    (
        re.compile(
            r"\bgift[- ](?:message|note|card message|wrap|wrapping|box)|贺卡|礼品包装", re.I
        ),
        "faq-gift-wrap",
    ),
)
TOPIC_FAQ_THRESHOLD = 0.88
# "我要退款" / "I want a refund": asks for one, not after one ("我要退款 东西还没发" read track_refund)
_WANTS_REFUND = re.compile(
    r"(?:要|想|申请)退款|\b(?:i want|i'd like|i need|give me)\s+(?:a |my )?refund\b|\brefund me\b",
    re.IGNORECASE,
)
# A refund of an order not shipped yet is its cancellation ("我刚付款的订单不想要了，退款")
_BEFORE_SHIPPING = re.compile(
    r"刚刚?(?:付款|付的款|支付|下单|下的单|拍的)|还没发货|没发货|未发货|还没(?:有)?发(?:出|走)?(?![票现])|"
    r"\bjust (?:paid|ordered|placed)\b|\b(?:hasn'?t|has not|not) (?:been )?shipped\b",
    re.IGNORECASE,
)
# "cancel my order and refund me" (get_refund 0.81) was offered delivered orders to return: the
# refund follows the cancellation. Not "the cancelled order" / "取消的订单" / "已取消".
_CANCEL_TOO = re.compile(r"\bcancel\b|(?<![已被])取消(?![了的])", re.IGNORECASE)
_RETURN_GOODS = re.compile(r"退货|寄回|\breturn", re.IGNORECASE)
# "my last order" / "最近那单" in the request itself: the newest of the orders that fit
_LATEST_ORDER = re.compile(
    r"\b(?:my|the)\s+(?:last|latest|most recent|newest|recent)\s+(?:[a-z]+\s+)?(?:order|purchase|delivery|"
    r"package|parcel|shipment)\b|"
    r"最近(?:的|一个|一次|那个|这个)?(?:订单|那单|这单|一单|买的)|上一(?:个|笔)?(?:订单|单)|最新的?订单|"
    r"刚(?:刚|才)?(?:买|下单|下|拍)的",
    re.IGNORECASE,
)


def picked_intent(text: str, offered: Sequence[str], language: str) -> str:
    """The intent a reply to a clarify picks: by position ("第一个", "2") or by its name as
    offered ("退货退款"); "" when it picks none."""
    if not offered:
        return ""
    n = followups.ordinal(text)
    if n is not None and (n == -1 or 1 <= n <= len(offered)):
        return offered[n - 1] if n != -1 else offered[-1]
    t = text.strip().lower()
    for intent in offered:
        if any(tpl.intent_name(intent, lang).lower() in t for lang in (language, "zh", "en")):
            return intent
    return ""


def narrowed_by_status_words(choices: list[OrderChoice], text: str) -> list[OrderChoice]:
    """The orders a "still not shipped" / "still not here" complaint can be about (all of them
    when none fits: the customer may be wrong about the state)."""
    hurry = _HURRY_SHIPPING.search(text)
    courier = hurry is not None and bool(re.search(r"快递|物流", hurry.group(0)))
    if _NOT_SHIPPED.search(text) or (hurry and not courier):
        fitting = [c for c in choices if c.status in OPEN_STATUSES]
    elif _NOT_ARRIVED.search(text) or courier:
        fitting = [c for c in choices if c.status in ("paid", "shipped")]
    else:
        return choices
    return fitting or choices


# "what's the status of all my orders?" / "我所有订单的物流": every one, asked in the request
_ALL_MY_ORDERS = re.compile(
    r"\ball (?:of )?(?:my|the) (?:orders|parcels|packages|purchases)\b|\bevery order\b|"
    r"所有(?:的)?(?:订单|快递|包裹)|全部(?:的)?(?:订单|快递|包裹)|(?:订单|快递|包裹)都",
    re.IGNORECASE,
)
# "全部都查一下" / "all of them": every order of the list, for a look-up
_ALL_OF_THEM = re.compile(
    r"全部|所有|都查|每个|\ball of them\b|\ball (?:my |the |of my )?orders\b|\bevery (?:one|order)\b|"
    r"\bboth\b|\ball three\b",
    re.IGNORECASE,
)
_DONT_WANT = re.compile(
    r"不要了|不想要了|不需要了|\b(?:don'?t|do not) (?:want|need) (?:it|this|that|them)"
    r"(?: any ?more)?\b|\bno longer (?:want|need)\b",
    re.IGNORECASE,
)
# "instead" / "不是…是…": another request for the order in hand, not an answer to the question
_INSTEAD = re.compile(
    r"\b(?:instead|rather|actually|wait|i meant|not (?:cancel|return|change))\b|"
    r"不是|而是|其实|应该是|搞错|说错|弄错|等等|等一下",
    re.IGNORECASE,
)
_ABANDON = re.compile(
    r"算了|不退了|不用了|不改了|不取消了|没事了|never ?mind|\bnvm\b|forget it|cancel that",
    re.IGNORECASE,
)
# what follows "算了" / "never mind" when the customer drops a request for another one: "算了，先帮我
# 查下物流吧" (not "算了不取消了", "never mind, don't change it")
_NEGATION = re.compile(r"不|别|没|\b(?:don'?t|do not|not|no|never)\b", re.IGNORECASE)


# Changing the recipient's phone or name on an order ("我想改一下订单上的收货人电话", "i need to
# update the phone number on my order", read as edit_account and sent to the profile settings):
# an address change whose answer is a phone number
_CONTACT_WORD = re.compile(
    r"收货人|收件人|联系人|电话|手机号|联系方式|\bphone\b|\bmobile\b|\bcontact (?:number|details)\b|"
    r"\brecipient\b",
    re.IGNORECASE,
)
_ORDER_CONTEXT = re.compile(
    r"订单|收货|收件|快递|包裹|\border\b|\bdelivery\b|\bparcel\b|\bpackage\b|\bshipment\b|"
    r"\bshipping\b",
    re.IGNORECASE,
)
_CONTACT_CHANGE_AS_READ = frozenset({"edit_account", "change_order", "change_shipping_address"})
_CHANGE_WORD = re.compile(
    r"改|换|更新|错|\bchange|\bupdate|\bwrong\b|\bedit\b|\bcorrect|\bfix\b", re.IGNORECASE
)


def asks_contact_change(text: str) -> bool:
    return bool(
        _CONTACT_WORD.search(text) and _ORDER_CONTEXT.search(text) and _CHANGE_WORD.search(text)
    )


# Two requests about two orders in one message ("取消订单A，另外B到哪了", "where is A and please
# cancel B"): each order id belongs to the request of its own clause
_CLAUSE_BREAK = re.compile(
    r"[，,;；。!！?？\n]|\b(?:and|also|then|plus|but)\b|另外|还有|顺便|以及|然后|同时|再帮我|再把",
    re.IGNORECASE,
)
_CLAUSE_REQUESTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("cancel_order", re.compile(r"取消|\bcancel", re.IGNORECASE)),
    ("change_shipping_address", re.compile(r"地址|\baddress", re.IGNORECASE)),
    (
        "get_refund",
        # "我要退7728362781": 退 right before the id, or after 要 / 想 / 申请
        re.compile(
            r"退货|退款|退钱|退掉|(?:要|想|申请|帮我)退|退(?=\s*(?:订单|单号)?\s*[0-9])|\breturn|\brefund",
            re.IGNORECASE,
        ),
    ),
    (
        "track_order",
        re.compile(
            r"到哪|在哪|物流|快递|发货|送到|到了吗|状态|\bwhere\b|\btrack|\bstatus\b|\bship|\barriv",
            re.IGNORECASE,
        ),
    ),
)
WRITE_REQUESTS = frozenset({"cancel_order", "change_shipping_address", "get_refund"})


def requests_by_order(text: str, order_ids: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Order id → the request its clause makes ("" when the clause names none); ``order_ids``
    are (id, as written in the message)."""
    found: dict[str, str] = {}
    request = ""
    for clause in _CLAUSE_BREAK.split(text):
        # a clause that names no request has the one before it: "取消A，还有B" cancels both
        request = next((name for name, rx in _CLAUSE_REQUESTS if rx.search(clause)), request)
        for order_id, written in order_ids:
            if written and written in clause and order_id not in found:
                found[order_id] = request
    return found


# A number meant as an order id but of the wrong length ("where is order 77301928"): it got the
# list of orders with no word about the number
_ORDER_WORD = re.compile(r"订单|单号|\border\b|#", re.IGNORECASE)
_WRONG_LENGTH_NUMBER = re.compile(r"(?<![0-9])([0-9]{6,9}|[0-9]{11,20})(?![0-9])")
# a shorter number right after the order word ("where is order 12345", "订单号1234") is meant as
# the id too; elsewhere 3-5 digits are quantities, prices or years
_SHORT_NUMBER_AFTER_ORDER_WORD = re.compile(
    r"(?:订单号?|单号|\border(?:\s*(?:number|no\.?|id))?|#)\s*[:：#]?\s*([0-9]{3,5})(?![0-9.,])",
    re.IGNORECASE,
)


def wrong_length_order_number(turn: Turn) -> str:
    """The number the message seems to give as an order id when it is not 10 digits long ("" if
    none): only with an order word, never a phone number (11 digits from 1) or another entity."""
    if turn.values("order_id") or not _ORDER_WORD.search(turn.text):
        return ""
    taken = {e.text for e in turn.entities}
    short = _SHORT_NUMBER_AFTER_ORDER_WORD.search(turn.text)
    if short and not any(short.group(1) in t for t in taken):
        return short.group(1)
    for m in _WRONG_LENGTH_NUMBER.finditer(turn.text):
        number = m.group(1)
        mobile = len(number) == 11 and number.startswith("1")
        if not mobile and not any(number in t for t in taken):
            return number
    return ""


# Answers after which the customer's money is on its way back for that order
_MONEY_COMING_BACK = frozenset({"cancelled", "return_created"})
_PRICE_ASKED = re.compile(
    r"多少钱|价格|价钱|几块|多少米|\bhow much\b|\bprice\b|\bcost\b", re.IGNORECASE
)
# "and my phone number?" / "那手机号呢": the question before, about another thing
_ELLIPTICAL = re.compile(
    r"(?:and|what about|how about|also|same for)\s+(?:the |my |your )?[\w' -]{1,30}\?*|"
    r"(?:那|还有)?[\u4e00-\u9fffA-Za-z0-9]{1,10}呢[?？]*",
    re.IGNORECASE,
)
# "哦" / "i see" / "k": taking note, nothing asked (it was "I can't help with that one")
_NOTED = re.compile(
    r"^(?:哦+|噢+|喔+|嗯+|额+|呃+|oh+|ah+|i see|got it|noted|知道了|明白了?|了解了?|收到|懂了|"
    r"ok(?:ay)?|k+|kk)[\s,.!。！~～]*$",
    re.IGNORECASE,
)


def bare_acknowledgement(text: str) -> bool:
    """Agreeing ("好的", "嗯嗯", "ok"), with no request in it and no answer to a which-question."""
    return len(text.strip()) <= 6 and followups.yes_or_no(text) is True


def abandoned_for_another(text: str) -> bool:
    """The message drops a request ("算了") and asks something else after it."""
    m = _ABANDON.search(text)
    if m is None:
        return False
    rest = text[m.end() :]
    return len(_WORD.findall(rest)) >= 3 and not _NEGATION.search(rest)


def abandons(text: str) -> bool:
    """The message drops a request and asks nothing else: "算了不取消了", "never mind"."""
    return bool(_ABANDON.search(text)) and not abandoned_for_another(text)


# "please try again" after "the order system is busy" asks for the same request again. The
# intent model has no label for it and reads it as place_order (0.54) or 再试一次 as
# place_order (0.71), which would otherwise count as a new request.
_RETRY = re.compile(
    r"\b(?:try (?:it |that )?again|retry|one more time|check again|again please)\b|"
    r"再试|重试|再查|再来一次|再看一下|再看看",
    re.IGNORECASE,
)


# -- the turn as the policy sees it ---------------------------------------------------------------
@dataclass(frozen=True)
class EntityRef:
    type: str
    text: str
    value: str
    score: float = 1.0  # nlu's; for a product, how much of its name the message has


@dataclass(frozen=True)
class Recommended:
    name: str
    reason: str
    price_cents: int = 0  # 0: not known, not shown
    currency: str = ""


@dataclass(frozen=True)
class Turn:
    message_id: str
    conversation_id: str
    user_id: str
    text: str
    masked_text: str
    language: str  # zh | en (the reply language)
    language_confidence: float = 1.0  # ingest's; low for "ok", "2", an order id alone
    intent: str = ""
    confidence: float = 0.0
    ranking: tuple[tuple[str, float], ...] = ()
    out_of_scope: bool = False
    entities: tuple[EntityRef, ...] = ()
    sentiment: str = "neutral"
    negative_score: float = 0.0
    escalate: bool = False
    recommendations: tuple[Recommended, ...] = ()
    suggestions_requested: bool = False  # "有什么耳机推荐吗": recommend's `requested`
    embedding: bytes = b""
    encoder_version: str = ""

    def values(self, kind: str) -> list[str]:
        return [e.value for e in self.entities if e.type == kind]

    def named_products(self) -> list[str]:
        """Products the message names specifically, for telling orders apart. A bare kind
        ("手机壳", "phone case") matches a dozen catalog products weakly and nlu lists three of
        them, arbitrary ones: "我最近买的那个手机壳" then served the order holding one of those
        three rather than the newest phone-case order. Such weak matches are left to the words."""
        return [
            e.value
            for e in self.entities
            if e.type == "product" and e.score >= SPECIFIC_PRODUCT_SCORE
        ]

    @property
    def confident(self) -> bool:
        return bool(self.intent) and self.confidence >= LOW_CONFIDENCE


def _hit_label(hit: FaqHit) -> str:
    return f"{hit.faq_id} {hit.score:.3f}"


def reply_language(language: str) -> str:
    return "zh" if language == "zh" else "en"


def turn_from_envelope(env: Envelope) -> Turn:
    nlu, senti, rec = env.nlu, env.sentiment, env.recommend
    negative = next((s.score for s in senti.scores if s.label == "negative"), 0.0)
    if not senti.scores and senti.label == "negative":
        negative = 1.0
    return Turn(
        message_id=env.message_id,
        conversation_id=env.conversation_id,
        user_id=env.user_id,
        text=to_simplified(env.text),  # the rules are written in simplified characters
        masked_text=env.masked_text or env.text,
        language=reply_language(env.language),
        language_confidence=float(env.ingest.language_confidence)
        if env.HasField("ingest")
        else 1.0,
        intent=nlu.intent,
        confidence=float(nlu.confidence),
        ranking=tuple((r.intent, float(r.score)) for r in nlu.ranking),
        out_of_scope=nlu.out_of_scope or nlu.intent == "out_of_scope",
        entities=tuple(EntityRef(e.type, e.text, e.value, e.score) for e in nlu.entities),
        sentiment=senti.label or "neutral",
        negative_score=float(negative),
        escalate=senti.escalate,
        recommendations=tuple(
            Recommended(i.name, i.reason, i.price_cents, i.currency) for i in rec.items if i.name
        )
        if rec.attached
        else (),
        suggestions_requested=rec.requested,
        embedding=nlu.embedding,
        encoder_version=nlu.encoder_version,
    )


# -- the decision -------------------------------------------------------------------------------
@dataclass
class Decision:
    action: str
    reason: str
    language: str
    text: str = ""
    template_id: str = ""
    faq_id: str = ""
    faq_score: float = 0.0
    order_call: OrderCallResult | None = None
    choices: list[str] = field(default_factory=list)
    handoff_reason: str = ""
    handoff_priority: str = ""
    handoff_summary: str = ""

    def to_section(self, state: DialogueState) -> ReplySection:
        section = ReplySection(
            action=self.action,
            text=self.text,
            language=self.language,
            reason=self.reason,
            template_id=self.template_id,
            faq_id=self.faq_id,
            faq_score=self.faq_score,
            choices=self.choices,
            handoff_reason=self.handoff_reason,
            handoff_priority=self.handoff_priority,
            handoff_summary=self.handoff_summary,
            turn=state.turn,
        )
        section.slots.update(state.slots())
        if self.order_call is not None:
            c = self.order_call
            section.order_call.CopyFrom(
                OrderCall(rpc=c.rpc, code=c.code, order_id=c.order_id, ms=c.ms)
            )
        return section


class FaqLookup(Protocol):
    async def lookup(
        self, turn: Turn, threshold: float | None = None, among: Collection[str] | None = None
    ) -> FaqHit | None: ...


@dataclass
class Deps:
    orders: OrderGateway
    faq: FaqLookup | None = None
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))


async def decide(turn: Turn, state: DialogueState, deps: Deps) -> Decision:
    """Choose this turn's action; ``state`` is updated in place for the next turn."""
    policy = _Policy(turn, state, deps)
    decision = await policy.run()
    decision = await policy.with_other_questions(decision)
    decision = policy.with_confirmation_reminder(decision)
    policy.finish(decision)
    return decision


# -- helpers on orders ----------------------------------------------------------------------------
def _ts(ts: Timestamp) -> dt.datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=dt.UTC)


def _within_window(order: orders_pb2.Order, now: dt.datetime) -> bool:
    deadline = _ts(order.return_deadline)
    return deadline is None or now <= deadline


def line_name(item: orders_pb2.OrderItem, language: str) -> str:
    return (item.name_zh if language == "zh" else item.name_en) or item.name_en or item.product_id


def item_names(order: orders_pb2.Order, language: str, limit: int = 2) -> str:
    names = [f"{line_name(i, language)} ×{i.quantity}" for i in order.items]
    shown = tpl.join_list(names[:limit], language)
    extra = len(names) - limit
    if extra > 0:
        shown += f" 等{len(names)}件" if language == "zh" else f" +{extra} more"
    return shown


def total_text(order: orders_pb2.Order) -> str:
    return tpl.money(order.total.currency, order.total.cents)


def expected_cancellation_fee(order: orders_pb2.Order, now: dt.datetime) -> int:
    """The fee in cents OrderService will charge for cancelling this open order now."""
    paid_at = _ts(order.paid_at)
    if order.status == "pending" or paid_at is None:
        return 0
    if now - paid_at <= dt.timedelta(hours=FREE_CANCELLATION_HOURS):
        return 0
    return min(CANCELLATION_FEE_CAP_CENTS, order.total.cents * CANCELLATION_FEE_PERCENT // 100)


def fee_rule(order: orders_pb2.Order, now: dt.datetime, language: str) -> str:
    total = order.total
    if order.status == "pending" or _ts(order.paid_at) is None:
        return tpl.advice("fee_rule_unpaid", language)
    fee = expected_cancellation_fee(order, now)
    if fee == 0:
        return tpl.advice("fee_rule_free", language, total=tpl.money(total.currency, total.cents))
    return tpl.advice(
        "fee_rule_fee",
        language,
        fee=tpl.money(total.currency, fee),
        refund=tpl.money(total.currency, total.cents - fee),
    )


def order_label(order: orders_pb2.Order, language: str) -> str:
    status = tpl.status_name(order.status, language)
    return f"{order.order_id} · {item_names(order, language)} · {status} · {total_text(order)}"


def choice_of(order: orders_pb2.Order, language: str) -> OrderChoice:
    return OrderChoice(
        order_id=order.order_id,
        status=order.status,
        names_en=[i.name_en for i in order.items],
        names_zh=[i.name_zh for i in order.items],
        product_ids=[i.product_id for i in order.items],
        label=order_label(order, language),
        labels={lang: order_label(order, lang) for lang in ("zh", "en")},
    )


def item_choices(order: orders_pb2.Order, language: str) -> list[OrderChoice]:
    """Order lines as choices for a return (order_id holds the product id)."""
    return [
        OrderChoice(
            order_id=i.product_id,
            names_en=[i.name_en],
            names_zh=[i.name_zh],
            product_ids=[i.product_id],
            label=f"{line_name(i, language)} ×{i.quantity}",
            labels={lang: f"{line_name(i, lang)} ×{i.quantity}" for lang in ("zh", "en")},
        )
        for i in order.items
    ]


# Chinese often drops the "我": "地址填错了，还没发货能改不" tells of the customer's own order (it got
# the FAQ's answer for a wrong item delivered)
_OWN = re.compile(
    r"我|填错|写错|选错|拍错|还没(?:发货|发|到|收到|退款|退钱)|刚(?:下|付)|已经(?:下单|付款|付了)|"
    # "退货寄回去一周了还没退款": a refund the customer is waiting for, not the policy
    r"寄回去?(?:了|\S{0,4}天|\S{0,4}周)|退款(?:还没|怎么还没|一直没)|"
    r"\b(?:refund|money) (?:still )?(?:hasn'?t|has not|never|didn'?t|did not)\b|"
    r"\b(?:still|already) (?:no|waiting for (?:the|a)) refund\b|\bsent (?:it|them|the \w+) back\b|"
    # "快递到哪了😭" asks where the customer's parcel is ("快递一般几天到" is general)
    r"(?:快递|包裹|物流|单子|这单|那单).{0,3}(?:到哪|在哪|到了吗|怎么还没)|"
    r"\bwhere(?:'s| is|s) (?:the|our) (?:package|parcel|order|delivery|stuff)\b|"
    r"\b(my|mine|me|i|i'm|i've|i'd|i'll)\b",
    re.IGNORECASE,
)


def bought_pattern(product: str) -> re.Pattern[str]:
    """A product as something the customer bought: "my headphones", "I bought headphones", "the
    shoes I bought", "买的耳机", "我的耳机"."""
    p = re.escape(product)
    return re.compile(
        rf"\b(?:my|bought|ordered|purchased|got)\s+(?:[\w-]+\s+){{0,2}}{p}|"
        rf"{p}\s+(?:that\s+)?(?:i|we)\s+(?:bought|ordered|got|purchased)\b|"
        rf"(?:买的|我的|收到的|买了|订的|下单的|到的).{{0,4}}{p}",
        re.IGNORECASE,
    )


def refers_to_own(text: str) -> bool:
    """ "我的退款" / "my order" is about the customer's own order; "退款多久到账" is general. So is
    a complaint that something has not shipped or arrived ("为什么还不发货，都三天了")."""
    return bool(_OWN.search(text) or _NOT_SHIPPED.search(text) or _NOT_ARRIVED.search(text))


def looks_like_question(text: str) -> bool:
    return bool(_QUESTION.search(text))


# Where one question of a message ends and the next begins: sentence marks always; in Chinese
# also commas and spaces ("满多少包邮 支持花呗吗"); in English a comma or "and" only before a
# question word ("how long does delivery take, and can I pay with PayPal?"), since "if I order
# today, when …" is one question.
_QUESTION_BREAK = re.compile(
    r"(?<=[?？。!！;；\n])\s*|(?<=[\u4e00-\u9fff])\s*[，,、 ]\s*(?=[\u4e00-\u9fff])|"
    r"(?:\s*,\s*(?:(?:and|also|plus)\s+)?|\s+(?:and|also|plus)\s+)(?=(?:how|what|when|where|which|who|"
    r"why|can|could|do|does|did|is|are|will|would|should)\b)",
    re.IGNORECASE,
)
_CJK = re.compile(r"[\u4e00-\u9fff]")


def question_clauses(text: str, beside_an_answer: bool = False) -> list[str]:
    """The questions a message asks, one per clause, when it asks more than one (a clause counts
    with ≥ 4 Han characters or ≥ 3 words, so "亲" or "hi, what" do not); [] for one question.
    ``beside_an_answer``: also one question after or before another clause ("the second one, and
    do you ship abroad?" answers a which-question and asks one)."""
    parts = [(part or "").strip(" ,，、.。~～") for part in _QUESTION_BREAK.split(text)]
    parts = [p for p in parts if len(_CJK.findall(p)) >= 4 or len(_LATIN_WORD.findall(p)) >= 3]
    clauses = [p for p in parts if looks_like_question(p)]
    if len(clauses) > 1 or (beside_an_answer and clauses and len(parts) > 1):
        return clauses
    return []


def recommendation_text(r: Recommended, language: str) -> str:
    """ "降噪耳机 ¥199.00（耳机类热销）" / "Noise-cancelling headphones — ¥199.00 (popular in …)"."""
    label = r.name
    if r.price_cents > 0:
        price = tpl.money(r.currency, r.price_cents)
        label = f"{label} {price}" if language == "zh" else f"{label} — {price}"
    if not r.reason:
        return label
    return f"{label}（{r.reason}）" if language == "zh" else f"{label} ({r.reason})"


def numbered(labels: Sequence[str]) -> str:
    return "".join(f"\n{n}. {label}" for n, label in enumerate(labels, 1))


# -- the policy -----------------------------------------------------------------------------------
class _Policy:
    def __init__(self, turn: Turn, state: DialogueState, deps: Deps) -> None:
        self.why_cancelled = asks_why_cancelled(turn.text)  # read once, used in three places
        # "when will it ship though?" right after an order answer got the delivery times
        about_recent = (
            turn.intent == "delivery_period"
            and bool(state.last_order_id)
            and state.turn + 1 - state.last_order_turn <= RECENT_ORDER_TURNS
            and bool(_THIS_ORDER.search(turn.text))
            and not _HYPOTHETICAL_ORDER.search(turn.text)
        )
        if asks_when_own_order_arrives(turn) or about_recent:
            turn = replace(turn, intent="track_order")  # rule 7 answers it with the tracking
        elif asks_return_progress(turn.text) and turn.intent != "track_refund":
            # answered with the customer's returns and refunds (rule 7)
            turn = replace(turn, intent="track_refund", confidence=max(turn.confidence, 0.9))
        elif self.why_cancelled and not turn.escalate:
            # answered with the cancelled order's state (rule 7), among the cancelled orders
            turn = replace(turn, intent="track_order", confidence=max(turn.confidence, 0.9))
        elif turn.intent == "contact_human_agent" and asks_when_agents_work(turn.text):
            # "几点有人工客服" asks for the service hours (contact_customer_service's answer)
            turn = replace(turn, intent="contact_customer_service")
        elif _FORGOT_LOGIN_NAME.search(turn.text) and not turn.values("order_id"):
            # "I forgot my username" (delete_account 0.58) was told how to delete the account
            turn = replace(turn, intent="recover_password", confidence=max(turn.confidence, 0.9))
        self.turn = turn
        self.state = state
        self.deps = deps
        self.lang = turn.language
        # "ok", "2" or an order id alone say little about the language: a Chinese conversation
        # is answered in Chinese when the customer replies "5520481139"
        if state.language and turn.language_confidence < SURE_LANGUAGE:
            self.lang = state.language
        self.understood = True  # False when this turn counts as a low-confidence one
        self.answered_pending = False  # True when the message answered the bot's question
        # a new address given before the order was chosen ("改地址，改成…" then "第二个")
        self.given_address: dict[str, str] = {}
        # the return reason stated before the bot asked which order ("you sent me the wrong item")
        self.given_reason = ""
        # the recipient's phone asked to change, in this turn or when the order was asked for
        self.contact_change = asks_contact_change(turn.text)
        self.given_contact: dict[str, str] | None = None

    # building replies
    def say(self, action: str, reason: str, template_id: str, **slots: Any) -> Decision:
        text = tpl.render(
            template_id, self.lang, {k: str(v) for k, v in slots.items()}, self.state.rotation
        )
        return Decision(action, reason, self.lang, text=text, template_id=template_id)

    def finish(self, d: Decision) -> None:
        """Apology, recommendations, no-repeat; then remember the turn."""
        s, turn = self.state, self.turn
        if d.action != "forward":
            # those two handoff templates apologise already
            # and so do some FAQ answers ("很抱歉给您带来不便。请在签收后…" got two apologies)
            apologetic = d.handoff_reason in ("dispute", "negative_sentiment") or bool(
                _APOLOGY_OPENING.match(d.text)
            )
            sorry = (
                turn.sentiment == "negative"
                and turn.negative_score >= APOLOGY_NEGATIVE_SCORE
                and d.template_id not in _NO_APOLOGY_TEMPLATES
            )
            if sorry and not apologetic:
                d.text = (
                    tpl.render("apology", self.lang, {}, s.rotation) + _space(self.lang) + d.text
                )
            # none on a turn the bot did not understand ("that didn't solve anything" was read as
            # a happy "thanks" by recommend)
            suggest = (
                d.action in ("answer", "faq", "order")
                and self.understood
                and d.template_id != "suggestions"  # the answer is the list already
            )
            if suggest and turn.recommendations:
                items = [
                    recommendation_text(r, self.lang)
                    for r in turn.recommendations[:MAX_RECOMMENDATIONS]
                ]
                d.text += "\n" + tpl.render(
                    "recommend", self.lang, {"items": tpl.join_list(items, self.lang)}, s.rotation
                )
            if d.text == s.last_reply_text:
                d.text = tpl.render("repeat_lead", self.lang, {}, s.rotation) + d.text
            s.last_reply_text = d.text
            s.last_template_id = d.template_id or d.faq_id
        if self.understood:
            s.low_confidence_streak = 0
        if turn.confident and not turn.out_of_scope:
            s.last_intent = turn.intent
        s.remember(PastTurn(s.turn, turn.masked_text[:200], turn.intent, d.action, turn.sentiment))

    def suggestions(self) -> Decision:
        """Asked what to buy: the recommend stage's items are the answer."""
        items = [
            recommendation_text(r, self.lang)
            for r in self.turn.recommendations[:MAX_RECOMMENDATIONS]
        ]
        if not items:
            return self.say("answer", "asked for suggestions, none to give", "no_suggestions")
        self.state.suggested = [
            recommendation_text(replace(r, reason=""), self.lang)
            for r in self.turn.recommendations[:MAX_RECOMMENDATIONS]
        ]
        return self.say("answer", "asked for suggestions", "suggestions", items=numbered(items))

    def handoff(self, reason: str, why: str) -> Decision:
        s = self.state
        d = self.say("handoff", why, f"handoff_{reason}")
        d.handoff_reason = reason
        d.handoff_priority = handoffs.priority(reason, self.turn.escalate)
        # summarise before the pending request is dropped: the agent needs its order id
        d.handoff_summary = handoffs.summary(s, reason, self.turn.masked_text, self.lang)
        s.pending = None
        s.next_requests = []
        s.handoff = Handoff(
            active=True,
            reason=reason,
            priority=d.handoff_priority,
            since_turn=s.turn,
            at=self.deps.now().isoformat(),
        )
        return d

    def low_confidence(self, reask: Callable[[], Decision]) -> Decision:
        """A turn the bot did not understand: ask again, or hand off on the second in a row."""
        self.understood = False
        self.state.low_confidence_streak += 1
        if self.state.low_confidence_streak >= LOW_CONFIDENCE_TURNS_FOR_HANDOFF:
            self.state.low_confidence_streak = 0
            return self.handoff(
                "low_confidence",
                f"{LOW_CONFIDENCE_TURNS_FOR_HANDOFF} turns in a row not understood",
            )
        return reask()

    # the rules, in order
    async def run(self) -> Decision:
        s, turn = self.state, self.turn
        s.turn += 1
        s.user_id = turn.user_id
        s.language = self.lang
        handoffs.update_sentiment(s, turn.sentiment, turn.negative_score)
        if s.handoff.active:
            return Decision(
                "forward", f"conversation is with a person ({s.handoff.reason})", self.lang
            )
        if (
            (
                _ASKS_IF_BOT.search(turn.text)
                or (
                    _ASKS_WHAT_BOT_DOES.search(turn.text)
                    and len(_CJK.findall(turn.text)) <= 2 * ASKS_WHAT_BOT_DOES_MAX_WORDS
                    and len(_LATIN_WORD.findall(turn.text)) <= ASKS_WHAT_BOT_DOES_MAX_WORDS
                )
            )
            and not _WANTS_PERSON.search(turn.text)
            and not turn.escalate
        ):
            return self.say("answer", "asked whether it is a bot", "bot_identity")
        trigger = self.handoff_trigger()
        if trigger is not None:
            return trigger
        clarified, s.clarify_intents = s.clarify_intents, []
        if s.pending is not None:
            s.paused = None
            decision = await self.continue_pending(s.pending)
            if decision is not None:
                self.answered_pending = True
                return await self.then_next_request(decision)
            if self.interrupts_with_question(s.pending):
                self.pause(s.pending)
            s.pending = None  # the customer moved on to something else
        s.next_requests = []  # asked with a request the customer has now left
        picked = picked_intent(turn.text, clarified, self.lang)
        if picked:
            # "第一个" after "您是想：退货退款、下单、还是退款政策？" was greeted as a hello
            return await self.act_on(picked)
        resumed = await self.resume_paused()
        if resumed is not None:
            return resumed
        named = self.named_offered_order()  # once: correction and "it" both need it
        corrected = await self.correction(named)
        if corrected is not None:
            return corrected
        other = await self.other_offered() if _OTHER_ONE.search(turn.text) else None
        if other is not None:
            # "不对 是另一个" right after an order was served read as dropping the request
            return other
        earlier = self.order_before_recent() if _PREVIOUS_ORDER.search(turn.text) else ""
        if earlier:
            # "and the one before that?" after "check my last order" was a clarify
            return await self.serve(s.offered_intent or "track_order", earlier)
        if _BARE_PICK.fullmatch(turn.text.strip()) and followups.ordinal(turn.text) is not None:
            # "第一个" with no list to pick from (none was offered: "no order can be returned")
            # was greeted as a hello
            return self.say("ask", "a pick with nothing to pick from", "nothing_to_pick")
        if _PARDON.fullmatch(turn.text.strip()) and s.last_reply_text:
            # "sorry what?" after an answer was "I can't help with that one"
            return self.say_again("asked to say it again")
        if (
            _WHAT_NOW.search(turn.text)
            and len(turn.text.split()) <= SHORT_FOLLOW_UP_WORDS + 2
            and s.last_template_id.endswith("_refused")
            and s.last_order_turn == s.turn - 1
        ):
            # "so what can I do then?" after "it can't be cancelled any more. You can refuse the
            # delivery, or return it …" was "I can't help with that one": the options again
            return self.say_again("asked what to do after a refusal")
        if (
            s.last_template_id == "order_not_found"
            and s.history
            and s.history[-1].turn == s.turn - 1
            and s.last_intent in ORDER_INTENTS
            and turn.values("order_id")
            and (
                _BARE_ORDER_ID.fullmatch(turn.text)
                or _CORRECTED_ID.search(turn.text)
                or not turn.confident
                or turn.intent == s.last_intent
            )
        ):
            # "sorry wrong number, it's 4421058824" after "I can't find order …" for a
            # cancellation was read as an address change (0.77): the same request, right id
            return await self.serve(s.last_intent, turn.values("order_id")[0])
        bare_ids = turn.values("order_id") if _BARE_ORDER_ID.fullmatch(turn.text) else []
        if bare_ids:
            # an order id alone, nothing asked before it: the customer wants that order's state
            # (it was read as out of scope and answered "I can't help with that")
            return await self.serve("track_order", bare_ids[0])
        if _NOTED.fullmatch(turn.text.strip()) or (
            followups.yes_or_no(turn.text) is True
            # "ok I want to return my headphones then" (get_refund 0.47) was "Alright."
            and len(turn.text.split()) <= SHORT_FOLLOW_UP_WORDS
            and (turn.out_of_scope or not turn.confident or turn.intent == "greeting")
        ):
            # "好的" / "ok" with nothing pending is no greeting and not out of scope
            return self.say("answer", "acknowledgement with nothing pending", "acknowledged")
        if not _WORD.search(turn.text):  # emoji or punctuation only: nothing to answer yet
            return self.say("answer", "no words in the message", "nudge")
        if (
            _NOT_RESOLVED.search(turn.text) and turn.intent in SMALL_TALK | {"out_of_scope", ""}
        ) or (turn.intent == "thanks" and _SARCASTIC_THANKS.search(turn.text)):
            # read as thanks (and answered with product suggestions); twice → a person
            return self.low_confidence(
                lambda: self.say("answer", "the customer says it is not solved", "not_resolved")
            )
        text = turn.text.strip()
        if _FILLER.fullmatch(text):  # "那个" / "我想问下": the question comes next
            return self.say("answer", "a lead-in without a question", "nudge")
        if (
            abandons(text)
            and len(text) <= 16
            and not looks_like_question(text)
            # "没事了 拜拜" is a goodbye: "anything else?" back is odd
            and not (turn.confident and turn.intent in ("goodbye", "thanks"))
        ):
            # "算了不取消了" with nothing pending was read as a new cancellation
            return self.say("answer", "the customer dropped a request", "acknowledged")
        if (
            turn.suggestions_requested
            and not turn.values("order_id")
            and not (turn.confident and turn.intent in ORDER_INTENTS | _NOT_FOR_SUGGESTIONS)
        ):
            # "有什么好用的耳机推荐吗" (out of scope 0.99) was told "I can't help with that"
            return self.suggestions()
        if _VAGUE_ORDER_HELP.fullmatch(text) and not turn.values("order_id"):
            # "I have a problem with my order" names no request: the classifier guesses one
            return self.say(
                "ask", "order help without a request: asking what is needed", "order_help"
            )
        received_problem = _RECEIVED_PROBLEM.search(text) or (
            # "你们推荐的那个耳机坏了": a product of the catalog named as broken
            turn.values("product") and _PRODUCT_BROKEN.search(text)
        )
        if received_problem and turn.intent not in _AFTER_SALES_AS_READ:
            return await self.after_sales(named)
        if _SIZE_PROBLEM.search(text) and (
            turn.out_of_scope
            or not turn.confident
            or turn.intent in ("place_order", "change_order")
        ):
            # "我买的衣服太大了" (place_order 0.48) was asked to choose between placing an order,
            # tracking and changing one: a return of what was bought, the size its reason
            return await self.after_sales(named)
        if _EXCHANGE.search(text) and (
            turn.intent in ("change_order", "out_of_scope") or not turn.confident
        ):
            # "我要换货" (change_order 0.83) offered the unshipped orders to change
            return self.say("answer", "an exchange asked for: how it works", "exchange")
        if (
            turn.intent == "check_refund_policy"
            or (turn.intent == "get_refund" and not turn.confident)
        ) and _WANTS_RETURN.search(text):
            # "我想return这个item" (check_refund_policy 0.52) was told the return policy, and
            # "hello! I'd like to return an item please" (get_refund 0.41) got a clarify
            return await self.after_sales(named)
        if (
            s.last_template_id == "change_order_open"
            and s.last_order_turn == s.turn - 1
            and _VARIANT_CHANGE.search(text)
            and turn.intent != "change_shipping_address"
        ):
            # "I want a bigger size" right after "order X hasn't shipped, change size under My
            # Orders" was "Alright.": where to change it, once more and plainly
            return self.say(
                "answer",
                "a size / colour change asked for an open order",
                "change_variant_self",
                order_id=s.last_order_id,
            )
        if (
            (turn.out_of_scope or not turn.confident)
            and s.last_order_id
            and s.last_order_turn == s.turn - 1
            and not looks_like_question(turn.text)
            and not turn.values("order_id")
        ):
            # a remark right after an order was served ("音质差，有杂音" once the return is filed)
            # was told "I can't help with that one"
            return self.say("answer", "a remark right after an order answer", "acknowledged")
        if (
            turn.values("order_id")
            and turn.intent not in ORDER_INTENTS
            and (_WHERE_IS_MY.search(turn.text) or _TRACK_WORD.search(turn.text))
        ):
            # "track 1118256606" (out of scope 0.13) was "I can't help with that one" too
            # "sorry can we talk in english? where is my order 7730192846" read as
            # contact_customer_service 0.66 got the opening hours: an order id asked where it is
            return await self.serve("track_order", turn.values("order_id")[0])
        if (
            turn.values("order_id")
            and _DONT_WANT.search(text)
            and turn.intent not in WRITE_REQUESTS | {"change_order"}
        ):
            # "4004223718不要了" (track_order 0.57) got the order's state: it is a cancellation
            # (a shipped or delivered order is refused with how to return it)
            return await self.serve("cancel_order", turn.values("order_id")[0])
        if _WILL_REFUSE.search(text):
            order_id = next(iter(turn.values("order_id")), "") or self.recent_order()
            template = "refuse_delivery" if order_id else "refuse_delivery_any"
            return self.say(
                "answer", "the customer will refuse the parcel", template, order_id=order_id
            )
        if (
            s.last_template_id == "track_shipped"
            and s.last_order_turn == s.turn - 1
            and _HURRY.search(text)
            and not turn.values("order_id")
            and not (turn.confident and turn.intent in WRITE_REQUESTS)
        ):
            # "能不能快点" right after "order X is on its way with SF, expected …" got the
            # delivery options: the parcel is with the courier, what the customer can do
            return self.say(
                "answer",
                "asked to hurry an order already with the courier",
                "hurry_in_transit",
                order_id=s.last_order_id,
            )
        if _SOMEONE_ELSES.search(text) and not (turn.confident and turn.intent in WRITE_REQUESTS):
            # only the account an order was placed with can see it (the security rule), and a
            # shopper asking for a friend deserves to hear why and what the friend can do
            return self.say("answer", "someone else's order asked about", "others_orders")
        if (
            s.last_template_id.startswith("faq-")
            and s.history
            and s.history[-1].turn == s.turn - 1
            and _HOW_FOLLOW_UP.search(text)
        ):
            # "那怎么申请" right after the price-protection answer (which says how) was "I can't
            # help with that one"
            return self.say_again("asked how, right after an FAQ answer that says how")
        if (
            s.last_template_id == "suggestions"
            and s.history
            and s.history[-1].turn == s.turn - 1
            and _PRICE_ASKED.search(text)
            and (n := followups.ordinal(text)) is not None
            and 0 < abs(n) <= len(s.suggested)
        ):
            # "第一个多少钱" right after the suggestions got the delivery template
            item = s.suggested[n - 1 if n > 0 else n]
            return self.say(
                "answer", "the price of a suggested product", "suggested_price", item=item
            )
        if (
            _ELLIPTICAL.fullmatch(text)
            and (turn.out_of_scope or not turn.confident)
            and s.last_intent in INFO_INTENTS
            and s.history
            and s.history[-1].turn == s.turn - 1
            and s.history[-1].action in ("answer", "faq")
        ):
            # "and my phone number?" right after how to change the e-mail was "I can't help with
            # that one": the same question about another thing
            return await self.inform(s.last_intent)
        if (
            s.last_template_id in _INVOICE_ENTRIES
            and _BY_EMAIL.search(text)
            and not (turn.confident and turn.intent in ORDER_INTENTS | {"edit_account"})
            and self.deps.faq is not None
        ):
            hit = await self.deps.faq.lookup(turn, threshold=0.0, among={"faq-invoice-issue"})
            if hit is not None:
                return self.faq_answer(hit, "the invoice by e-mail, asked right after the invoice")
        if (
            _HURRY_SHIPPING.search(text)
            and (turn.intent not in ORDER_INTENTS or not turn.confident)
        ) or (_NOT_SHIPPED.search(text) and (turn.out_of_scope or not turn.confident)):
            # "能催一下发货吗，急用" (track_order 0.31) was asked to choose between three intents:
            # the customer's unshipped orders are what it is about
            return await self.ask_which_order("track_order")
        if (
            _PARCEL_DETAIL.search(text)
            and not turn.values("order_id")
            and turn.intent not in WRITE_REQUESTS
            and not _OTHER_ORDER.search(text)
            and (recent_order := self.recent_order())
        ):
            # "what was the tracking number again?" right after tracking an order listed every
            # order to choose from; "which courier is it?" got the delivery options
            return await self.serve("track_order", recent_order)
        if (turn.out_of_scope or not turn.confident) and _TRACK_COMMAND.search(text):
            # "track my headphones order" (out of scope 0.88) got "I can't help with that"
            return await self.ask_which_order("track_order")
        if _WHERE_IS_MY.search(turn.text) and (
            not turn.confident
            # read as out of scope with confidence after a retrain ("where's my t shirt"): a
            # product of the catalog or goods named ("where is my food delivery from meituan"
            # is another service)
            or (turn.out_of_scope and (turn.values("product") or _GOODS.search(turn.text)))
        ):
            # "where's my t shirt" (out of scope 0.34): in a shop's chat, the customer's order
            return await self.ask_which_order("track_order")
        if self.contact_change and (
            turn.intent in _CONTACT_CHANGE_AS_READ or turn.out_of_scope or not turn.confident
        ):
            # "i need to update the phone number on my order" (edit_account 0.59) was sent to the
            # profile settings: the order's recipient is changed like its address
            if turn.values("order_id"):
                return await self.serve("change_shipping_address", turn.values("order_id")[0])
            return await self.ask_which_order("change_shipping_address")
        if (
            (turn.out_of_scope or not turn.confident)
            and not turn.values("order_id")
            and _STREET_ADDRESS.search(text)
            and self.address_in_turn() is not None
        ):
            # "上海市浦东新区世纪大道100号 李四 139…" sent with nothing asked got "I can't help with
            # that": a new address means an order's address change; the order is asked for
            return await self.ask_which_order("change_shipping_address")
        if _LANGUAGE_REQUEST.search(text) and len(text) <= 40 and not turn.values("order_id"):
            # "can you reply in English please" (out of scope 0.68) was "I can't help with that"
            return self.say("answer", "asked for the other language", "language_ok")
        if turn.out_of_scope:
            return await self.out_of_scope()
        order_ids = turn.values("order_id")
        recent = (
            self.order_just_discussed(named)
            if turn.intent in ORDER_INTENTS and not order_ids
            else ""
        )
        if (
            not recent
            and not order_ids
            and turn.intent == "track_refund"
            and s.last_template_id in _MONEY_COMING_BACK
            and s.last_order_turn == s.turn - 1
        ):
            # "how long for the refund?" right after a cancellation got the FAQ's "after the
            # warehouse receives your return": that order's refund is meant
            recent = s.last_order_id
        # an order id, or "it" right after an order was looked up, says the message is about an
        # order: a hesitant order intent is acted on ("and what about the refund for it?" 0.45)
        hinted = (
            turn.intent in ORDER_INTENTS
            and turn.confidence >= ORDER_HINT_CONFIDENCE
            and bool(order_ids or recent)
        )
        if not turn.confident and not hinted:
            # unsure of the intent, but the FAQ may hold the very question: "优惠券用不了是怎么回事"
            # scored 0.99 on the coupon entry and was asked to choose between three intents
            hit = await self.topic_faq_hit() or await self.faq_hit()
            if hit is not None:
                return self.faq_answer(hit, "low intent confidence, but the FAQ answers it")
            return self.low_confidence(self.clarify)
        if turn.intent == "thanks" and _CLOSING.search(text):
            return self.say("answer", "thanks that ends the chat", "goodbye")
        if turn.intent in SMALL_TALK:
            return self.say("answer", f"small talk: {turn.intent}", turn.intent)
        # "has my latest order shipped? also, do you gift-wrap?": the order first, the topic's
        # answer under it (``with_other_questions``); it was the gift-wrap answer alone
        asks_order_too = turn.intent in ORDER_INTENTS and bool(question_clauses(text))
        topic_hit = None if asks_order_too else await self.topic_faq_hit()
        if topic_hit is not None:
            return self.faq_answer(topic_hit, "a topic a rule names, confirmed by the FAQ search")
        if _FAQ_FIRST_TOPICS.search(text):
            hit = await self.faq_hit()
            if hit is not None:  # "the price dropped after I bought it": price protection
                return self.faq_answer(hit, "a topic the FAQ answers before any order flow")
        if turn.intent in ORDER_INTENTS:
            distinct = list(dict.fromkeys(order_ids))
            if len(distinct) > 1:
                mixed = await self.several_requests(distinct)
                if mixed is not None:
                    return mixed
            if len(distinct) > 1 and turn.intent in LOOKUP_INTENTS:
                return await self.serve_each(turn.intent, distinct[:MAX_ORDERS_PER_TURN])
            if order_ids:
                return await self.serve(turn.intent, order_ids[0])
            if recent:  # "ok, cancel it" / "那帮我取消吧" right after looking an order up
                return await self.serve(turn.intent, recent)
            if (
                not refers_to_own(turn.text)
                and not _BARE_REQUEST.fullmatch(turn.text.strip())
                # "please cancel the knife set order": a product named with an order request is
                # the customer's own order, not a question in general
                and not turn.values("product")
            ):
                hit = await self.faq_hit()
                if hit is not None:  # "how long does a refund take?" is not about one order
                    return self.faq_answer(hit, f"{turn.intent} asked in general")
            if (
                turn.intent == "get_refund"
                or (turn.intent == "track_refund" and _WANTS_REFUND.search(turn.text))
            ) and (
                _BEFORE_SHIPPING.search(turn.text)
                or (_CANCEL_TOO.search(turn.text) and not _RETURN_GOODS.search(turn.text))
            ):
                # "我刚付款的订单不想要了，退款" / "cancel my order and refund me" were offered
                # delivered orders to return
                return await self.ask_which_order("cancel_order")
            return await self.ask_which_order(turn.intent)
        if turn.intent in INFO_INTENTS:
            return await self.inform(turn.intent)
        return self.low_confidence(self.clarify)  # an intent this policy does not know

    async def act_on(self, intent: str) -> Decision:
        """The request the customer picked from a clarify, as if the model had read it."""
        if intent in ORDER_INTENTS:
            return await self.ask_which_order(intent)
        if intent == "contact_human_agent":
            return self.handoff("customer_request", "a person picked from the options")
        if intent == "complaint":
            return self.handoff("dispute", "a complaint picked from the options")
        if intent in SMALL_TALK:
            return self.say("answer", f"picked from the options: {intent}", intent)
        return self.say("answer", f"picked from the options: {intent}", f"intent:{intent}")

    async def after_sales(self, named: str) -> Decision:
        """A wrong, damaged or broken item received: a return of that order, its reason the
        message itself. "收到的是坏的怎么办" asks what to do: the FAQ answers when it holds it."""
        turn = self.turn
        if looks_like_question(turn.text):
            hit = await self.faq_hit()
            if hit is not None:
                return self.faq_answer(hit, "a question about a received item")
        ids = turn.values("order_id")
        order_id = ids[0] if ids else self.order_just_discussed(named)
        if order_id:
            return await self.serve("get_refund", order_id)
        return await self.ask_which_order("get_refund")

    def recent_order(self) -> str:
        """The order looked up within RECENT_ORDER_TURNS, or ""."""
        s = self.state
        recent = s.last_order_id and s.turn - s.last_order_turn <= RECENT_ORDER_TURNS
        return s.last_order_id if recent else ""

    def order_just_discussed(self, named: str) -> str:
        """The recent order when this message refers to it without naming one: it says "it" /
        "this order" / "这单" or speaks of the customer's own ("cancel my order", "那帮我取消吧"),
        names no product and no other order (``named``: another offered order it names, from
        ``named_offered_order``). Looked up again (scoped to the user) and, for changes,
        confirmed first, so a wrong guess costs one "no"."""
        turn = self.turn
        if named or turn.values("product") or _OTHER_ORDER.search(turn.text):
            return ""  # "cancel my huawei one" after tracking another
        s = self.state
        # "能取消吗" / "can I cancel?" right after an order answer got the FAQ's how-to
        short_reply = (
            s.last_order_turn == s.turn - 1
            and len(_WORD.findall(turn.text)) <= SHORT_FOLLOW_UP_CHARS
            and len(turn.text.split()) <= SHORT_FOLLOW_UP_WORDS
        )
        if (
            _THIS_ORDER.search(turn.text)
            or refers_to_own(turn.text)
            or _FOLLOW_UP.search(turn.text.strip())
            or short_reply
        ):
            return self.recent_order()
        return ""

    async def other_offered(self) -> Decision | None:
        """ "the other one" right after one of the offered orders was served: that request for
        the other, or the others to choose from; None when nothing was offered."""
        s = self.state
        recent = self.recent_order()
        if not recent:
            return None
        offered = [c.order_id for c in s.offered]
        if not s.offered_intent or recent not in offered or len(offered) == 1:
            # "what about the other one" after an order named by its id: nothing was offered, so
            # the customer's orders are (it was "I can't help with that one")
            intent = s.last_intent if s.last_intent in LOOKUP_INTENTS else "track_order"
            return await self.ask_which_order(intent)
        return await self.offer_others(s.offered_intent, recent)

    async def offer_others(self, intent: str, order_id: str) -> Decision | None:
        """``intent`` for the offered order other than ``order_id``, or the others to choose
        from; None when there is no other."""
        others = [c for c in self.state.offered if c.order_id != order_id]
        if len(others) == 1:
            return await self.serve(intent, others[0].order_id)
        if not others:
            return None
        self.state.pending = Pending(intent, "order_choice", choices=others)
        return self.offer_orders(others, "another order meant: offering the rest")

    def say_again(self, why: str) -> Decision:
        """The bot's last reply once more, without the product suggestions under it (and none
        added to this one)."""
        openings = tuple(
            variant.split("{", 1)[0]
            for language in ("zh", "en")
            for variant in tpl.TEMPLATES["recommend"][language]
        )
        lines = self.state.last_reply_text.split("\n")
        previous = "\n".join(line for line in lines if not line.startswith(openings))
        self.understood = False
        return self.say("answer", why, "said_again", previous=previous)

    def order_before_recent(self) -> str:
        """The offered order listed right after the one just served (the offer is newest
        first, so the one placed before it); "" when there is none."""
        s, recent = self.state, self.recent_order()
        ids = [c.order_id for c in s.offered]
        if not recent or recent not in ids or ids.index(recent) + 1 >= len(ids):
            return ""
        return ids[ids.index(recent) + 1]

    def named_offered_order(self) -> str:
        """An order of the last offer this message names that is not the one just served."""
        if not self.recent_order():
            return ""
        return self.offered_other_than(self.state.last_order_id, ())

    def offered_other_than(self, order_id: str, order_ids: Sequence[str]) -> str:
        """An order of the last offer (``state.offered``) the message names, by position,
        product or one of ``order_ids``, other than ``order_id``; "" when none."""
        s, turn = self.state, self.turn
        if not s.offered:
            return ""
        pick = followups.pick_choice(turn.text, s.offered, order_ids, turn.named_products())
        if isinstance(pick, OrderChoice) and pick.order_id != order_id:
            return pick.order_id
        return ""

    async def correction(self, named: str) -> Decision | None:
        """ "No, the huawei one" (``named``, from ``named_offered_order``) right after the bot
        served another of the orders it had offered or matched: the same request for that
        order. A confident different request is not a correction."""
        s, turn = self.state, self.turn
        ids = turn.values("order_id")
        if (
            ids
            and s.last_intent in ORDER_INTENTS
            and self.recent_order()
            and _BARE_ORDER_ID.fullmatch(turn.text)
        ):
            # "7730192891" alone after "那我退款的进度呢" was answered for another order
            return await self.serve(s.last_intent, ids[0]) if ids[0] != s.last_order_id else None
        # a product named alone reads as placing an order ("就那个卫衣", place_order 0.60)
        names_only = turn.intent == "place_order" and bool(named)
        if (
            turn.confident
            and not turn.out_of_scope
            and turn.intent != s.offered_intent
            and not names_only
        ):
            return None
        return await self.serve(s.offered_intent, named) if named else None

    def picks_an_order(self) -> bool:
        """The message picks one of the orders the bot is asking about: "ok, the pending one"
        (contact_human_agent 0.62) was handed to a person."""
        s, turn = self.state, self.turn
        asked = s.pending if s.pending is not None else s.paused
        if asked is None or asked.awaiting != "order_choice":
            return False
        pick = followups.pick_choice(turn.text, asked.choices, (), turn.named_products())
        return isinstance(pick, OrderChoice)

    def interrupts_with_question(self, p: Pending) -> bool:
        """A question that is no new order request, asked instead of saying which order, yes or
        no, or the new address: answered, and the request kept for the next turn. A look-up
        ("will that delay the delivery?" reads as tracking the order) is no new request while a
        change of a known order waits."""
        turn = self.turn
        new_request = turn.confident and turn.intent in ORDER_INTENTS
        if p.awaiting != "order_choice" and turn.intent in LOOKUP_INTENTS:
            new_request = False
        return (
            p.awaiting in ("order_choice", "confirm", "address")
            and looks_like_question(turn.text)
            and not new_request
            and not turn.values("order_id")
        )

    def pause(self, p: Pending) -> None:
        """Set the request aside for the next turn (``resume_paused``)."""
        s = self.state
        s.pending, s.paused, s.paused_turn = None, p, s.turn

    async def resume_paused(self) -> Decision | None:
        """The order choice a question interrupted, picked right after the answer ("which
        order?" → "do you ship to Canada?" → "ok, the pending one" was handed to a person)."""
        s, turn = self.state, self.turn
        p = s.paused
        if p is None or s.turn == s.paused_turn:  # paused by this very turn
            return None
        s.paused = None  # one turn's chance
        if s.turn != s.paused_turn + 1:
            return None
        if (
            turn.confident
            and turn.intent in ORDER_INTENTS
            and turn.intent != p.intent
            and not _BARE_PICK.fullmatch(turn.text.strip())
        ):
            return None  # a new request, served as one
        if p.awaiting == "address":
            # "will that delay the delivery?" (answered), then the address: it was "Alright."
            given = followups.parse_address(turn.text, self.lang) or followups.place_only(turn.text)
            if not given:
                return None
            s.pending = p
            return await self.continue_pending(p)
        if p.awaiting == "confirm":
            # "确认要取消吗？" → "取消要扣钱吗" (answered) → "好 那取消吧" listed every order
            said = followups.yes_or_no(turn.text)
            if said is None and not (turn.confident and turn.intent == p.intent):
                return None
            s.pending = p
            return await self.continue_pending(p)
        ids = turn.values("order_id")
        pick = followups.pick_choice(turn.text, p.choices, ids, turn.named_products())
        # "改那个还没付款的" when none of them is unpaid: asked again, with the list
        attempt = followups.ordinal(turn.text) is not None or followups.state_named(turn.text)
        # "ok go ahead" after the answer, to a list of one order: that one
        agrees = len(p.choices) == 1 and followups.yes_or_no(turn.text) is True
        if not (
            isinstance(pick, OrderChoice)
            or attempt
            or agrees
            or _BARE_ORDER_ID.fullmatch(turn.text)
        ):
            return None
        s.pending = p
        return await self.continue_pending(p)

    def handoff_trigger(self) -> Decision | None:
        s, turn = self.state, self.turn
        wants_person = _HUMAN_REQUEST.search(turn.text) or (
            turn.intent == "contact_human_agent" and turn.confident and not self.picks_an_order()
        )
        if wants_person and not asks_when_agents_work(turn.text):
            return self.handoff("customer_request", "the customer asked for a person")
        signal = handoffs.dispute_signal(turn.text)
        complaint = turn.intent == "complaint" and turn.confident and s.pending is None
        if signal or complaint:
            why = f"dispute words: {signal!r}" if signal else "complaint"
            return self.handoff("dispute", why)
        manager = _MANAGER_REQUEST.search(turn.text)
        if manager:
            return self.handoff("customer_request", f"asked for a manager: {manager.group(0)!r}")
        if turn.escalate:
            return self.handoff("negative_sentiment", "sentiment flagged escalation")
        if handoffs.getting_worse(s):
            return self.handoff(
                "negative_sentiment", f"negative {s.negative_streak} turns in a row"
            )
        return None

    def clarify(self) -> Decision:
        intents = [
            intent
            for intent, _ in self.turn.ranking
            if intent not in ("out_of_scope", "") and intent in tpl.INTENT_NAMES
        ][:3]
        options = [tpl.intent_name(intent, self.lang) for intent in intents]
        if len(options) >= 2:
            self.state.clarify_intents = intents
            d = self.say(
                "clarify",
                "low confidence: offering the top intents",
                "clarify_choices",
                choices=tpl.join_choices(options, self.lang),
            )
            d.choices = options
            return d
        return self.say("clarify", "low confidence: asking to rephrase", "clarify_rephrase")

    async def with_other_questions(self, d: Decision) -> Decision:
        """Every question of a message that asks several ("满多少包邮？支持花呗吗？") answered from
        the FAQ, each clause looked up on its own; the whole message, a mix of both, often scores
        on one entry or on none (only one of them was answered). An FAQ or template answer gets
        the clauses' answers under it (a template may repeat one of them: better than leaving a
        question unanswered); a clarify is replaced only when every clause has its entry.
        Measured: ``python -m services.reply.faq measure-pairs``."""
        if self.deps.faq is None or d.action not in ("faq", "answer", "clarify", "order"):
            return d
        replaceable = d.template_id.startswith("intent:") or d.template_id in (
            "out_of_scope",
            "clarify_rephrase",
        )
        # an order looked up ("has my latest order shipped? also, do you gift-wrap?"): nothing
        # is pending, so the other question's answer can follow it
        looked_up = d.action == "order" and self.state.pending is None
        if d.action != "faq" and not replaceable and not looked_up:
            return d
        clauses = question_clauses(self.turn.text, looked_up and self.answered_pending)
        clauses = clauses[:MAX_QUESTIONS_PER_TURN]
        if not clauses:
            return d
        if looked_up:  # the clauses about the customer's own order are what was answered
            clauses = [c for c in clauses if not refers_to_own(c)]
        hits: list[FaqHit] = []
        for clause in clauses:
            asked = replace(self.turn, text=clause, masked_text=clause, embedding=b"")
            hit = await self.topic_faq_hit(asked) or await self.deps.faq.lookup(asked)
            if hit is not None and all(h.faq_id != hit.faq_id for h in hits):
                hits.append(hit)
        twin = _TEMPLATE_TWINS.get(d.template_id.removeprefix("intent:"))
        if d.action == "answer" and any(h.faq_id == twin for h in hits):
            # the template says what that entry says: "how long does delivery take, and …" got
            # the delivery template and the delivery-time entry under it
            first = next(h for h in hits if h.faq_id == twin)
            d = self.faq_answer(first, f"{d.reason}; its FAQ entry on its own")
        if d.action in ("faq", "order") or (d.action == "answer" and len(hits) < len(clauses)):
            extra = [h for h in hits if h.faq_id != d.faq_id and h.answer not in d.text]
            if not extra:
                return d
            texts = [h.answer for h in extra]
            # the answers in the order the questions were asked ("满多少包邮？支持花呗吗？": the
            # topic rule had answered the second one first)
            ids = [h.faq_id for h in hits]
            position = ids.index(d.faq_id) if d.faq_id in ids else 0
            texts.insert(min(position, len(texts)), d.text)
            d.text = "\n".join(texts)
            d.reason += "; other questions: " + ", ".join(_hit_label(h) for h in extra)
            return d
        if len(hits) < len(clauses):
            return d
        if d.action == "clarify":  # the turn is understood after all
            self.understood = True
            self.state.low_confidence_streak = max(0, self.state.low_confidence_streak - 1)
        labels = ", ".join(_hit_label(h) for h in hits)
        return Decision(
            "faq",
            f"{len(hits)} questions, each answered by the FAQ ({labels})",
            self.lang,
            text="\n".join(h.answer for h in hits),
            faq_id=hits[0].faq_id,
            faq_score=hits[0].score,
        )

    def with_confirmation_reminder(self, d: Decision) -> Decision:
        """A question answered while a change waits for its yes or no, or for the new address:
        the answer says the change still waits (kept for the next turn, ``resume_paused``)."""
        s, p = self.state, self.state.paused
        if p is None or s.paused_turn != s.turn or d.action not in ("faq", "answer", "order"):
            return d
        template = {"confirm": "confirm_still_open", "address": "address_still_open"}.get(
            p.awaiting
        )
        if template is None:
            return d
        d.text += "\n" + tpl.render(template, self.lang, {"order_id": p.order_id}, s.rotation)
        return d

    async def faq_hit(self) -> FaqHit | None:
        return await self.deps.faq.lookup(self.turn) if self.deps.faq is not None else None

    async def topic_faq_hit(self, asked: Turn | None = None) -> FaqHit | None:
        """The entry a rule names by topic (``_FAQ_TOPIC_ENTRIES``) when the message (or
        ``asked``, one question of it) scores on it at a lower bar: "do you price match? I saw it
        cheaper on another site" scored 0.928 on the price-match entry, under the general
        threshold, and got the delivery template."""
        turn = asked or self.turn
        text = turn.text
        wanted = {
            faq_id
            for pattern, faq_id in _FAQ_TOPIC_ENTRIES
            if pattern.search(text)
            and not (faq_id in _TOPIC_UNLESS and _TOPIC_UNLESS[faq_id].search(text))
        }
        if not wanted or self.deps.faq is None:
            return None
        return await self.deps.faq.lookup(turn, threshold=TOPIC_FAQ_THRESHOLD, among=wanted)

    async def out_of_scope(self) -> Decision:
        hit = await self.topic_faq_hit() or await self.faq_hit()
        if hit is not None:
            return self.faq_answer(hit, "out of scope for the intents, but the FAQ answers it")
        return self.say("clarify", "out of scope: saying what the bot can do", "out_of_scope")

    async def inform(self, intent: str) -> Decision:
        if intent == "recover_password" and _FORGOT_LOGIN_NAME.search(self.turn.text):
            return self.say("answer", f"{intent}: the login name forgotten", "forgot_login_name")
        if intent in ("registration_problems", "create_account") and _ALREADY_REGISTERED.search(
            self.turn.text
        ):
            # "it says my email is already in use" got the advice for a missing code
            return self.say("answer", f"{intent}: already registered", "already_registered")
        hit = await self.faq_hit()
        if hit is not None:
            return self.faq_answer(hit, f"{intent}: FAQ match")
        why = "no FAQ entry above threshold" if self.deps.faq else "FAQ search unavailable"
        return self.say("answer", f"{intent}: template ({why})", f"intent:{intent}")

    def faq_answer(self, hit: FaqHit, reason: str) -> Decision:
        return Decision(
            "faq",
            f"{reason} ({hit.faq_id} {hit.score:.3f})",
            self.lang,
            text=hit.answer,
            faq_id=hit.faq_id,
            faq_score=hit.score,
        )

    # -- order flows --------------------------------------------------------------------------
    def switching(self, pending: Pending) -> bool:
        """A confident new request, not an answer to the pending question."""
        t = self.turn
        return (
            t.confident
            and not t.out_of_scope
            and t.intent != pending.intent
            and t.intent != "out_of_scope"
            # "好的" (greeting 0.90) to "要退哪件？" dropped the return: agreeing is no new request,
            # the question is asked again
            and not bare_acknowledgement(t.text)
        )

    def kept(self, pending: Pending) -> Decision:
        self.state.pending = None
        if not pending.order_id:
            return self.say("answer", f"customer dropped {pending.intent}", "dropped")
        template = "kept_going_on" if self.state.next_requests else "kept"
        return self.say(
            "answer", f"customer declined ({pending.intent})", template, order_id=pending.order_id
        )

    async def continue_pending(self, p: Pending) -> Decision | None:
        turn = self.turn
        if (
            p.order_id
            and p.awaiting in ("confirm", "address", "return_items", "return_reason")
            and self.switching(p)
            and turn.intent in WRITE_REQUESTS | {"change_order"}
            and not turn.values("order_id")
            and _INSTEAD.search(turn.text)
        ):
            # "no wait, I want to cancel it instead" while asked for the new address was read as
            # "no" and the order kept: the other request, for the same order
            self.state.pending = None
            return await self.serve(turn.intent, p.order_id)
        if p.awaiting == "order_choice":
            pick = followups.pick_choice(
                turn.text, p.choices, turn.values("order_id"), turn.named_products()
            )
            if p.intent == "get_refund" and pick is None and _RETURN_REASON.search(turn.text):
                # "质量不好" (why, not which) read as "不好" = no, and the return was dropped
                p.reason = turn.masked_text[:200]
                return self.offer_orders(p.choices, "return reason noted: asking which order")
            if abandoned_for_another(turn.text):
                return None  # "算了，先帮我查下物流吧": the new request is served
            # "where is my phone case order?" while asked which order to cancel is a new
            # request about a listed order, not the pick: start it afresh (it finds the order
            # by the product named). A bare pick ("the phone case one") is no question. Before
            # the "no": "wait, first, do you ship to Canada?" was "wait" = no, left unanswered.
            if self.switching(p) and looks_like_question(turn.text):
                return None
            if pick is None and looks_like_question(turn.text) and not turn.values("order_id"):
                # "对了 退货运费谁出啊" (check_refund_policy 0.46) while asked which order to return:
                # the FAQ's answer, and the order choice kept for the next turn
                hit = await self.topic_faq_hit() or await self.faq_hit()
                if hit is not None:
                    self.pause(p)
                    return self.faq_answer(hit, "a question the FAQ answers, asked instead")
            if pick is None and _OTHER_ONE.search(turn.text):
                # "不是这个 另外一个" to the list was "no" and dropped the cancellation
                return self.offer_orders(p.choices, "another one meant: asking again")
            if abandons(turn.text) or followups.yes_or_no(turn.text) is False:
                return self.kept(p)
            if (
                pick is None
                and p.intent in LOOKUP_INTENTS
                and len(p.choices) > 1
                and _ALL_OF_THEM.search(turn.text)
            ):
                # "全部都查一下" was "couldn't match that"; "all of them" (goodbye 0.54) "Goodbye"
                ids = [c.order_id for c in p.choices][:MAX_ORDERS_PER_TURN]
                self.state.pending = None
                return await self.serve_each(p.intent, ids)
            if pick is None and turn.confident and turn.intent in ("thanks", "goodbye"):
                return None  # "好的 谢谢亲" was "couldn't match that"
            address = self.address_in_turn() if p.intent == "change_shipping_address" else None
            if address is not None:
                p.address = address  # kept until the customer says which order
            if pick is None and len(p.choices) == 1 and followups.yes_or_no(turn.text) is True:
                pick = p.choices[0]  # "ok" to a list of one: that one
            if p.contact and address is None and (contact := self.contact_in_turn()):
                self.given_contact = contact
                if pick is None and len(p.choices) == 1:
                    pick = p.choices[0]  # the new phone sent to a list of one: that order
                elif pick is None:
                    # sent to a list of several it was lost: kept until the order is chosen
                    p.contact_given = contact
                    shown = " ".join(x for x in (contact.get("name"), contact.get("phone")) if x)
                    return self.offer_orders(
                        p.choices,
                        "new contact noted: asking which order",
                        "ask_order_choice_contact",
                        contact=shown,
                    )
            if pick is not None:
                order_id = pick if isinstance(pick, str) else pick.order_id
                self.given_address, self.given_reason = dict(p.address), p.reason
                self.contact_change = self.contact_change or p.contact
                if p.contact_given and self.given_contact is None:
                    self.given_contact = dict(p.contact_given)  # sent with the request
                if p.intent == "track_order" and (
                    _RECEIVED_PROBLEM.search(turn.text) or _PRODUCT_BROKEN.search(turn.text)
                ):
                    # "耳机有杂音" naming the order of a vague "我上次买的东西有点问题": a return,
                    # the fault its reason (it got the tracking of the delivered order)
                    self.given_reason = turn.masked_text[:200]
                    return await self.serve("get_refund", order_id)
                return await self.serve(p.intent, order_id)
            if address is not None:
                return self.offer_orders(p.choices, "new address noted: asking which order")
            if _LANGUAGE_REQUEST.search(turn.text):
                # "can you reply in English please" was "couldn't match that" (and counted)
                d = self.offer_orders(p.choices, "asked for the other language: asking again")
                return replace(d, text=tpl.advice("language_ok", self.lang) + d.text)
            if self.switching(p):
                return None
            unlisted = await self.unlisted_order_named(p)
            if unlisted:
                # "the wok" when the wok's order was not offered: "couldn't match that" left the
                # customer guessing; serving it says why it cannot be done
                return await self.serve(p.intent, unlisted)
            labels = [c.label_in(self.lang) for c in p.choices]
            return self.low_confidence(
                lambda: self.with_choices(
                    self.say(
                        "ask",
                        "could not tell which order",
                        "ask_order_choice_again",
                        orders=numbered(labels),
                    ),
                    labels,
                )
            )
        if p.awaiting == "confirm":
            # another order of the list this request offered ("等等，不是这个，是第三个") was
            # read as "no" and nothing happened
            other = (
                self.offered_other_than(p.order_id, turn.values("order_id"))
                if self.state.offered_intent == p.intent
                else ""
            )
            if other:
                return await self.serve(p.intent, other)
            if _OTHER_ONE.search(turn.text) and self.state.offered_intent == p.intent:
                offered = await self.offer_others(p.intent, p.order_id)
                if offered is not None:
                    return offered
            if abandoned_for_another(turn.text):
                return None  # "算了，先帮我查下物流吧" was a "no" and the tracking was lost
            answer = followups.yes_or_no(turn.text)
            if answer is True:
                return await self.execute_confirmed(p)
            if answer is False:
                return self.kept(p)
            if self.switching(p):
                return None
            return self.low_confidence(
                lambda: self.say("ask", "waiting for yes or no", "ask_confirm_again")
            )
        if p.awaiting == "address":
            if abandoned_for_another(turn.text):
                return None  # "算了，先帮我查下物流吧": the new request is served
            if abandons(turn.text) or followups.yes_or_no(turn.text) is False:
                return self.kept(p)
            address = followups.parse_address(turn.text, self.lang)
            part = p.address.get(ADDRESS_PART, "")
            if part:  # the place or the street came in the message before
                joined = followups.joined_address(part, turn.text, self.lang)
                if joined is not None and (address is None or not address.get("city")):
                    address = joined
            if address is not None and not address.get("city"):
                # the order system needs a city: "建国路88号 张三 139…" failed as INVALID_ARGUMENT
                p.address[ADDRESS_PART] = address["display"]
                return self.say(
                    "ask",
                    "address without a city: asking for it",
                    "ask_address_city",
                    address=address["display"],
                )
            if address is not None:
                p.address.pop(ADDRESS_PART, None)
                p.address.update(address)
                p.awaiting = "confirm"
                return self.say(
                    "ask",
                    "new address read: confirming",
                    "ask_address_confirm",
                    order_id=p.order_id,
                    address=followups.address_text(address),
                )
            if place := followups.place_only(turn.text):
                # "改到北京朝阳区": kept, the street asked for ("couldn't read an address" before)
                p.address[ADDRESS_PART] = place
                return self.say(
                    "ask",
                    "a place without the street: asking for it",
                    "ask_address_street",
                    place=place,
                )
            contact = self.contact_in_turn()
            if contact is not None and (p.contact or _CONTACT_WORD.search(turn.text)):
                return self.confirm_contact(p, contact)
            if self.switching(p):
                return None
            template = "ask_contact_again" if p.contact else "ask_address_again"
            return self.low_confidence(
                lambda: self.say("ask", "no address in the message", template)
            )
        if p.awaiting == "return_items":
            if abandoned_for_another(turn.text):
                return None
            if abandons(turn.text):
                return self.kept(p)
            chosen = followups.pick_items(turn.text, p.items, turn.named_products())
            if not p.reason and _RETURN_REASON.search(turn.text):
                # "the headphones, they don't fit": the items and the reason in one answer (the
                # reason was asked for next); "it doesn't fit" alone keeps it for the return
                p.reason = turn.masked_text[:200]
            if chosen:
                p.product_ids = [] if len(chosen) == len(p.items) else [c.order_id for c in chosen]
                if p.reason:  # given with the request or with the items
                    return await self.create_return(p)
                p.awaiting = "return_reason"
                return self.say(
                    "ask",
                    "items chosen: asking the reason",
                    "ask_return_reason",
                    order_id=p.order_id,
                )
            if self.switching(p):
                return None
            labels = [c.label_in(self.lang) for c in p.items]
            return self.low_confidence(
                lambda: self.with_choices(
                    self.say(
                        "ask",
                        "could not tell which items",
                        "ask_return_items",
                        order_id=p.order_id,
                        items=numbered(labels),
                    ),
                    labels,
                )
            )
        if p.awaiting == "return_reason":
            if abandoned_for_another(turn.text):
                return None
            if abandons(turn.text):
                return self.kept(p)
            # a reason reads like a request ("尺码不合适" → change_order, "it's broken" →
            # complaint): only a confident question about something else moves on
            if self.switching(p) and looks_like_question(turn.text):
                return None
            names_item_only = not _RETURN_REASON.search(turn.text) and (
                followups.named_items(turn.text, p.items, turn.named_products())
                # "the mug" (a product, maybe of another order) is no reason either
                or (bool(turn.values("product")) and len(turn.text.split()) <= 3)
            )
            # "全部" / "the first one" / "就是那个降噪的" (naming the item again): not a reason
            # "k" / "ok" / "yes" to "why are you returning it?" was filed as the reason
            acknowledges = bool(_NOTED.fullmatch(turn.text.strip())) or (
                followups.yes_or_no(turn.text) is True and len(turn.text.split()) <= 2
            )
            if _NO_REASON.search(turn.text.strip()) or names_item_only or acknowledges:
                return self.low_confidence(
                    lambda: self.say(
                        "ask", "no reason in the message", "ask_return_reason", order_id=p.order_id
                    )
                )
            p.reason = turn.masked_text[:200]  # "it arrived broken" (complaint-like) is a reason
            return await self.create_return(p)
        if p.awaiting == "retry":
            if self.switching(p) and not _RETRY.search(turn.text):
                return None
            if p.order_id:
                return await self.serve(p.intent, p.order_id)
            return await self.ask_which_order(p.intent)
        return None  # an unknown awaiting value (older state): start afresh

    def contact_in_turn(self) -> dict[str, str] | None:
        """A new recipient phone in this message (its order ids left out)."""
        text = self.turn.text
        for order_id in self.turn.values("order_id"):
            text = text.replace(order_id, " ")
        return followups.parse_contact(text)

    def confirm_contact(self, p: Pending, contact: dict[str, str]) -> Decision:
        """A new phone (and name) alone: the current address with the new recipient."""
        p.address = {**p.current, **contact}
        shown = " ".join(x for x in (p.address.get("name"), p.address.get("phone")) if x)
        p.address["display"] = shown
        p.awaiting = "confirm"
        return self.say(
            "ask",
            "new recipient phone read: confirming",
            "ask_contact_confirm",
            order_id=p.order_id,
            contact=shown,
        )

    def address_in_turn(self) -> dict[str, str] | None:
        """A new address in this message (order ids taken out: they are not house numbers)."""
        # exactly ten digits: an 11-digit phone number lost its first ten ("张三 13912345678"
        # became "张三  8" in the address)
        return followups.parse_address(ORDER_ID_IN_TEXT_RE.sub(" ", self.turn.text), self.lang)

    def with_choices(self, d: Decision, labels: list[str]) -> Decision:
        d.choices = labels
        return d

    def offer_orders(
        self,
        choices: Sequence[OrderChoice],
        why: str,
        template: str = "ask_order_choice",
        **slots: str,
    ) -> Decision:
        """ "Which order is it?" with the numbered list."""
        labels = [c.label_in(self.lang) for c in choices]
        return self.with_choices(
            self.say("ask", why, template, orders=numbered(labels), **slots), labels
        )

    def busy(self, call: OrderCallResult, keep: Pending) -> Decision:
        """The order system did not answer: a graceful reply, then a person on the 2nd turn."""
        s = self.state
        s.order_failures += 1
        if s.order_failures >= ORDER_FAILURE_TURNS_FOR_HANDOFF:
            s.order_failures = 0
            d = self.handoff(
                "order_service_down",
                f"{call.rpc} failed {ORDER_FAILURE_TURNS_FOR_HANDOFF} turns in a row ({call.code})",
            )
        else:
            s.pending = keep
            d = self.say(
                "order", f"{call.rpc} failed: {call.code} {call.detail}".strip(), "order_busy"
            )
        d.order_call = call
        return d

    def succeeded(self) -> None:
        self.state.order_failures = 0

    async def ask_which_order(self, intent: str) -> Decision:
        s, turn = self.state, self.turn
        call = await self.deps.orders.list_orders(turn.user_id, limit=10)
        if call.failed:
            return self.busy(call, Pending(intent, "retry"))
        if not call.ok:
            return self.order_error(call, intent)
        self.succeeded()
        now = self.deps.now()
        orders = list(call.response.orders)
        eligible = [o for o in orders if ELIGIBLE[intent](o, now)]
        why_cancelled = intent == "track_order" and self.why_cancelled
        if why_cancelled:
            eligible = [o for o in orders if o.status == "cancelled"] or eligible
        s.pending = None
        s.offered, s.offered_intent = [], intent
        if not orders:
            d = self.say("order", "the customer has no orders", "no_orders")
        elif not eligible:
            d = self.no_eligible(intent)
        else:
            every = [choice_of(o, self.lang) for o in eligible]
            several = len(every) > 1  # one order in all is offered, not guessed
            # a correction ("no, the mug one") picks among these: all that could be meant, also
            # when the words below narrow them to one ("俺的快递咋还不到" served the one on its
            # way, and "就那个卫衣" could not move to the hoodie's order)
            s.offered = every[:MAX_LISTED_ORDERS]
            if intent == "track_order":
                # "我上周买的手机壳到现在还没到": of the orders with a phone case, the ones not
                # delivered yet (the returned one was served)
                every = narrowed_by_status_words(every, turn.text)
            choices = every[:MAX_LISTED_ORDERS]
            products = turn.named_products()
            named = followups.best_mention(turn.text, choices, products)
            if named is None and several:
                # "ok and cancel the unpaid one" listed every order again
                named = followups.by_status(turn.text, every)
            if named is None and _LATEST_ORDER.search(turn.text):
                # "my last order" / "最近那单": ListOrders is newest first; "我最近买的那个手机壳":
                # the newest with a phone case (the newest order, with none, was served)
                named = (followups.top_mentions(turn.text, every, products) or choices)[0]
            if named is None and not followups.top_mentions(turn.text, every, products):
                # "return the wok" when the wok's order cannot be returned: it was not listed
                # and the customer got the others; serving it says why it cannot be done
                named = self.named_among(orders, exclude=every)
            if named is None:
                # "我昨天买的手机壳什么时候发货": only the unshipped orders with a phone case fit
                fitting = followups.top_mentions(turn.text, every, products) or every
                if intent == "track_order":
                    fitting = narrowed_by_status_words(fitting, turn.text)
                if len(fitting) == 1 and (several or why_cancelled):
                    named = fitting[0]  # one cancelled order: the one asked about
                else:
                    choices = s.offered = fitting[:MAX_LISTED_ORDERS]
            if named is not None:
                served = await self.serve(intent, named.order_id)
                return served
            if intent in LOOKUP_INTENTS and len(choices) > 1 and _ALL_MY_ORDERS.search(turn.text):
                # "what's the status of all my orders?" listed them to choose one
                ids = [c.order_id for c in choices][:MAX_ORDERS_PER_TURN]
                return await self.serve_each(intent, ids)
            s.pending = Pending(intent, "order_choice", choices=choices)
            if intent == "change_shipping_address":
                s.pending.address = self.address_in_turn() or {}
                s.pending.contact = self.contact_change
                if self.contact_change and not s.pending.address:
                    # "收货人电话改成139…" before the order is chosen: kept for it
                    s.pending.contact_given = self.contact_in_turn() or {}
            if intent == "get_refund":
                s.pending.reason = self.reason_in_request()
            d = self.offer_orders(choices, f"{intent}: no order id; listing recent orders")
            wrong = wrong_length_order_number(turn)
            if wrong:
                d = replace(d, text=tpl.advice("not_an_order_id", self.lang, number=wrong) + d.text)
            missing = self.product_in_no_order(orders)
            if missing:
                # "I bought headphones recently and they stopped working" from a customer with no
                # headphones got the list alone, picked from it and returned storage boxes
                d = replace(
                    d, text=tpl.advice("product_not_in_orders", self.lang, product=missing) + d.text
                )
        d.order_call = call
        return d

    def product_in_no_order(self, orders: Sequence[orders_pb2.Order]) -> str:
        """The product the message names (as written) when none of ``orders`` has it: "" when
        it names none, or one of the orders has it."""
        turn = self.turn
        # only a product the customer says they bought: "english" in "answer in english", the
        # "box" of "box was crushed" and "gift" in "gift wrap" name catalog products too
        named = [
            e
            for e in turn.entities
            if e.type == "product" and e.text and bought_pattern(e.text).search(turn.text)
        ]
        if not named or not orders:
            return ""
        bought = {i.product_id for o in orders for i in o.items}
        if any(e.value in bought for e in named):
            return ""
        choices = [choice_of(o, self.lang) for o in orders]
        if followups.top_mentions(turn.text, choices, turn.named_products()):
            return ""
        return named[0].text

    def named_among(
        self, orders: Sequence[orders_pb2.Order], exclude: Sequence[OrderChoice]
    ) -> OrderChoice | None:
        """The order of ``orders`` (not among ``exclude``) the message names by product: the
        newest when several name it ("I bought headphones recently and they stopped working",
        two headphone orders past the return window: the storage boxes, the one order that
        could be returned, were offered and returned)."""
        listed = {c.order_id for c in exclude}
        others = [choice_of(o, self.lang) for o in orders if o.order_id not in listed]
        named = followups.top_mentions(self.turn.text, others, self.turn.named_products())
        if len(named) > 1:
            # a tie is broken only by a product nlu found ("phone number" is no phone case)
            found = set(self.turn.values("product"))
            named = [c for c in named if found & set(c.product_ids)]
        return named[0] if named else None

    async def unlisted_order_named(self, p: Pending) -> str:
        """An order of the customer's the message names by product that the bot did not offer
        (it cannot take the request); "" when none, or when the order system cannot say."""
        if not _WORD.search(self.turn.text):
            return ""
        call = await self.deps.orders.list_orders(self.turn.user_id, limit=10)
        if not call.ok:
            return ""  # the list is asked for again instead
        named = self.named_among(list(call.response.orders), exclude=p.choices)
        return named.order_id if named is not None else ""

    def no_eligible(self, intent: str) -> Decision:
        if intent == "track_refund":
            return self.say("order", "no order has a refund", "no_refunds")
        if intent in ("track_order", "check_invoice", "get_invoice"):
            return self.say("order", "no orders to show", "no_orders")
        key = _WHAT[intent]
        why = f"{key}_why"
        if intent == "get_refund" and _RECEIVED_PROBLEM.search(self.turn.text):
            # "收到的货发错了" past day 7 was told only that returns close after 7 days: the FAQ
            # promises 30 days for faulty and wrong items, which a person handles
            why = "return_why_faulty"
        elif intent == "get_refund" and _SIZE_PROBLEM.search(self.turn.text):
            # "it's too big" was told only that returns need a delivered order in the window
            why = "return_why_size"
        return self.say(
            "order",
            f"{intent}: no eligible order",
            "no_eligible_orders",
            what=tpl.advice(f"{key}_what", self.lang),
            why=tpl.advice(why, self.lang),
        )

    def order_error(self, call: OrderCallResult, intent: str) -> Decision:
        self.state.pending = None
        if call.code == "NOT_FOUND":
            # identical words for "not yours" and "does not exist": ids cannot be probed
            d = self.say(
                "order",
                f"{call.rpc}: NOT_FOUND for this user",
                "order_not_found",
                order_id=call.order_id,
            )
        else:
            detail = "暂时无法完成该操作。" if self.lang == "zh" else "it can't be done right now."
            d = self.say(
                "order",
                f"{call.rpc}: {call.code} {call.detail}".strip(),
                "order_error",
                order_id=call.order_id or "-",
                detail=detail,
            )
        d.order_call = call
        return d

    async def serve(self, intent: str, order_id: str) -> Decision:
        """Run an order intent for a known order id (always scoped to the conversation's user)."""
        s, user = self.state, self.turn.user_id
        s.pending = None
        if intent == "track_refund":
            call = await self.deps.orders.get_refund_status(user, order_id)
        else:
            call = await self.deps.orders.get_order(user, order_id)
        if call.failed:
            return self.busy(call, Pending(intent, "retry", order_id=order_id))
        if not call.ok:
            return self.order_error(call, intent)
        self.succeeded()
        s.last_order_id = order_id
        s.last_order_turn = s.turn
        d = await self.after_lookup(intent, call.response)
        if d.order_call is None:  # a return created at once carries its own CreateReturn call
            d.order_call = call
        return d

    async def several_requests(self, order_ids: list[str]) -> Decision | None:
        """Requests about several orders in one message: "取消订单A，另外B到哪了", "cancel A and
        return B". The look-ups are answered first, then the changes one at a time, in the order
        asked (each confirmation last, so "确认" answers it). None when the clauses do not ask
        that (the usual rules apply)."""
        turn = self.turn
        written = {e.value: e.text for e in turn.entities if e.type == "order_id"}
        requests = requests_by_order(turn.text, [(o, written.get(o, o)) for o in order_ids])
        changes = [NextRequest(r, o) for o, r in requests.items() if r in WRITE_REQUESTS]
        lookups = [o for o, r in requests.items() if r == "track_order"]
        if not changes:
            return None
        if not lookups and len(changes) == 1:
            # "7730192857这个没问题，7730192812帮我取消": the order whose clause asks the change
            return await self.serve(changes[0].intent, changes[0].order_id)
        texts: list[str] = []
        if lookups:
            looked = await self.serve_each("track_order", lookups[: MAX_ORDERS_PER_TURN - 1])
            if looked.action != "order":
                return looked  # the order system is busy: said once, nothing changed
            texts.append(looked.text)
        if len(changes) > 1:
            texts.append(
                tpl.render(
                    "requests_in_turn",
                    self.lang,
                    {
                        "first": self.change_words(changes[0]),
                        "then": tpl.join_list(
                            [self.change_words(c) for c in changes[1:]], self.lang
                        ),
                    },
                    self.state.rotation,
                )
            )
        first = changes[0]
        self.state.next_requests = changes[1:]
        change = await self.then_next_request(await self.serve(first.intent, first.order_id))
        return replace(
            change,
            reason=f"{change.reason}; {len(requests)} orders named, each with its own request",
            text="\n".join([*texts, change.text]),
        )

    def change_words(self, request: NextRequest) -> str:
        return tpl.advice(f"do_{request.intent}", self.lang, order_id=request.order_id)

    async def then_next_request(self, done: Decision) -> Decision:
        """Once the pending request is settled (done, declined or refused), the next change the
        customer asked for in the same message goes on in the same reply."""
        s = self.state
        while s.pending is None and s.next_requests and not s.handoff.active:
            if done.action not in ("order", "answer"):
                break  # the order system failed: the customer hears that first
            nxt = s.next_requests.pop(0)
            d = await self.serve(nxt.intent, nxt.order_id)
            done = replace(
                d,
                reason=f"{done.reason}; then {nxt.intent} asked in the same message: {d.reason}",
                text=f"{done.text}\n{d.text}",
                order_call=d.order_call or done.order_call,
            )
        if s.handoff.active or done.action not in ("order", "answer", "ask"):
            s.next_requests = []
        return done

    async def serve_each(self, intent: str, order_ids: list[str]) -> Decision:
        """A look-up for several orders named at once ("7730192846和7730192879到哪了"): one answer
        per order, in the order named (only the first was answered). A busy order system stops
        it with the usual answer; "it" afterwards means none of them."""
        answers: list[Decision] = []
        for oid in order_ids:
            d = await self.serve(intent, oid)
            if d.action != "order":
                return d
            answers.append(d)
        self.state.last_order_id = ""
        return replace(
            answers[0],
            reason=f"{intent} for {len(answers)} orders named",
            text="\n".join(d.text for d in answers),
        )

    async def after_lookup(self, intent: str, resp: Any) -> Decision:
        lang, s = self.lang, self.state
        if intent == "track_refund":
            if resp.status in ("pending", "done"):
                return self.refund_reply(resp)
            return await self.no_refund_reply(resp)
        order: orders_pb2.Order = resp
        oid, status = order.order_id, tpl.status_name(order.status, lang)
        items = item_names(order, lang)
        if intent == "track_order":
            return self.track_reply(order)
        if intent in ("check_invoice", "get_invoice"):
            if order.invoice_number:
                return self.say(
                    "order",
                    "invoice issued",
                    "invoice_ready",
                    order_id=oid,
                    invoice=order.invoice_number,
                )
            return self.say("order", "no invoice yet", "invoice_pending", order_id=oid)
        if intent == "change_order":
            if order.status in OPEN_STATUSES:
                return self.say("order", "order still open", "change_order_open", order_id=oid)
            return self.say(
                "order", f"order {order.status}", "change_order_closed", order_id=oid, status=status
            )
        if intent == "cancel_order":
            if order.status in OPEN_STATUSES:
                s.pending = Pending("cancel_order", "confirm", order_id=oid)
                return self.say(
                    "ask",
                    "cancellable: confirming first (fee rule stated)",
                    "ask_cancel_confirm",
                    order_id=oid,
                    items=items,
                    total=total_text(order),
                    fee_rule=fee_rule(order, self.deps.now(), lang),
                )
            advice = (
                tpl.advice("shipped_cancel", lang)
                if order.status in ("shipped", "delivered")
                else ""
            )
            return self.say(
                "order",
                f"not cancellable: {order.status}",
                "cancel_refused",
                order_id=oid,
                status=status,
                advice=advice,
            )
        if intent == "change_shipping_address":
            if order.status not in OPEN_STATUSES:
                advice = tpl.advice("shipped_address", lang) if order.status == "shipped" else ""
                return self.say(
                    "order",
                    f"address fixed: {order.status}",
                    "address_refused",
                    order_id=oid,
                    status=status,
                    advice=advice,
                )
            a = order.shipping_address
            pending = Pending(
                "change_shipping_address",
                "address",
                order_id=oid,
                address={"name": a.name, "phone": a.phone, "country": a.country},
                contact=self.contact_change,
                current={f.name: v for f, v in a.ListFields() if isinstance(v, str)},
            )
            s.pending = pending
            # the address may already be in this message ("change 7730192846's address to ...")
            # or in one before the order was chosen
            inline = self.address_in_turn() or self.given_address or None
            contact = self.given_contact or (self.contact_in_turn() if pending.contact else None)
            if inline is None and contact is not None:
                return self.confirm_contact(pending, contact)
            if inline is not None:
                pending.address.update(inline)
                pending.awaiting = "confirm"
                return self.say(
                    "ask",
                    "new address given: confirming",
                    "ask_address_confirm",
                    order_id=oid,
                    address=followups.address_text(inline),
                )
            current = ", ".join(x for x in (a.line1, a.city) if x) or "-"
            if pending.contact:
                return self.say(
                    "ask",
                    "asking for the recipient's new phone",
                    "ask_contact",
                    order_id=oid,
                    current=" ".join(x for x in (a.name, a.phone) if x) or "-",
                )
            return self.say(
                "ask", "asking for the new address", "ask_address", order_id=oid, current=current
            )
        if intent == "get_refund":
            return await self.start_return(order)
        raise ValueError(f"not an order intent: {intent}")

    def track_reply(self, order: orders_pb2.Order) -> Decision:
        lang, oid = self.lang, order.order_id
        items, status = item_names(order, lang), tpl.status_name(order.status, lang)
        sh = order.shipment
        if order.status == "shipped":
            return self.say(
                "order",
                "shipped: carrier, tracking, ETA",
                "track_shipped",
                order_id=oid,
                items=items,
                carrier=tpl.carrier_name(sh.carrier, lang) or "-",
                tracking=sh.tracking_number or "-",
                eta=tpl.date_text(_ts(sh.eta), lang),
            )
        if order.status == "delivered":
            return self.say(
                "order",
                "delivered",
                "track_delivered",
                order_id=oid,
                items=items,
                delivered=tpl.date_text(_ts(sh.delivered_at), lang),
            )
        if order.status in OPEN_STATUSES:
            return self.say(
                "order",
                f"not shipped: {order.status}",
                "track_not_shipped",
                order_id=oid,
                items=items,
                status=status,
            )
        if order.status == "cancelled":
            return self.say(
                "order",
                "cancelled: refund state and the usual reasons",
                "track_cancelled",
                order_id=oid,
                items=items,
                refund_text=cancelled_refund_text(order, lang),
                why=tpl.advice("cancel_reasons", lang) if self.why_cancelled else "",
            )
        return self.say(
            "order", f"closed: {order.status}", "track_closed", order_id=oid, status=status
        )

    async def no_refund_reply(self, r: orders_pb2.RefundStatus) -> Decision:
        """No refund on the order: why, from the order's state ("订单X取消了钱什么时候退" about a
        paid order that was never cancelled got only "no refund record")."""
        call = await self.deps.orders.get_order(self.turn.user_id, r.order_id)
        if call.ok:
            order: orders_pb2.Order = call.response
            status = tpl.status_name(order.status, self.lang)
            if order.status in OPEN_STATUSES:
                return self.say(
                    "order",
                    "no refund: the order is not cancelled",
                    "refund_none_open",
                    order_id=r.order_id,
                    status=status,
                )
            if order.status == "shipped":
                return self.say(
                    "order",
                    "no refund: the order is on its way",
                    "refund_none_shipped",
                    order_id=r.order_id,
                )
        return self.refund_reply(r)

    def refund_reply(self, r: orders_pb2.RefundStatus) -> Decision:
        lang, oid = self.lang, r.order_id
        amount = tpl.money(r.amount.currency, r.amount.cents) if r.amount.currency else "-"
        if r.status == "pending":
            return self.say(
                "order",
                "refund pending",
                "refund_pending",
                order_id=oid,
                amount=amount,
                requested=tpl.date_text(_ts(r.requested_at), lang),
            )
        if r.status == "done":
            return self.say(
                "order",
                "refund done",
                "refund_done",
                order_id=oid,
                amount=amount,
                completed=tpl.date_text(_ts(r.completed_at), lang),
            )
        return self.say("order", "no refund", "refund_none", order_id=oid)

    def reason_in_request(self) -> str:
        """The return reason the customer already gave ("耳机音质太差了想退"): this message or
        one of the last turns that asked for the refund; "" when none did."""
        texts = [self.turn.masked_text] + [
            h.text
            for h in reversed(self.state.history[-RECENT_ORDER_TURNS:])
            if h.intent == "get_refund"
        ]
        return next((t[:200] for t in texts if _RETURN_REASON.search(t)), "")

    async def start_return(self, order: orders_pb2.Order) -> Decision:
        lang, oid, now = self.lang, order.order_id, self.deps.now()
        why = ""
        if order.status in OPEN_STATUSES:
            why = tpl.advice("not_delivered_open", lang)
        elif order.status == "shipped":
            why = tpl.advice("not_delivered", lang)
        elif order.status in ("returned", "cancelled") or order.refund_status in (
            "pending",
            "done",
        ):
            why = tpl.advice("already_returned", lang)
        elif not _within_window(order, now):
            why = tpl.advice(
                "window_closed", lang, deadline=tpl.date_text(_ts(order.return_deadline), lang)
            )
        if why:
            return self.say(
                "order",
                f"no return possible: {order.status}",
                "return_refused",
                order_id=oid,
                why=why,
            )
        items = item_choices(order, lang)
        pending = Pending("get_refund", "return_items", order_id=oid, items=items)
        pending.reason = self.reason_in_request() or self.given_reason
        self.state.pending = pending
        # "return the phone case" / "退全部" choose in the first message; "I want a refund" does not
        chosen = (
            items
            if len(items) == 1
            else followups.named_items(self.turn.text, items, self.turn.named_products())
        )
        if not chosen:
            labels = [c.label_in(self.lang) for c in items]
            return self.with_choices(
                self.say(
                    "ask",
                    "several items: asking which",
                    "ask_return_items",
                    order_id=oid,
                    items=numbered(labels),
                ),
                labels,
            )
        pending.product_ids = [] if len(chosen) == len(items) else [c.order_id for c in chosen]
        if pending.reason:  # asking "why?" again made "就是那个降噪的" the recorded reason
            return await self.create_return(pending)
        pending.awaiting = "return_reason"
        return self.say(
            "ask", "return possible: asking the reason", "ask_return_reason", order_id=oid
        )

    async def execute_confirmed(self, p: Pending) -> Decision:
        s, user, lang = self.state, self.turn.user_id, self.lang
        # the order acted on is the one "it" means in the next turns
        s.last_order_id, s.last_order_turn = p.order_id, s.turn
        if p.intent == "cancel_order":
            call = await self.deps.orders.cancel_order(
                user, p.order_id, "customer request via chat"
            )
            if call.failed:
                return self.busy(call, p)
            if call.code == "FAILED_PRECONDITION":
                # changed since we asked (shipped meanwhile, or already cancelled): say its status
                s.pending = None
                look = await self.deps.orders.get_order(user, p.order_id)
                status = look.response.status if look.ok else ""
                if status == "cancelled":
                    d = self.say(
                        "order",
                        "already cancelled",
                        "track_closed",
                        order_id=p.order_id,
                        status=tpl.status_name(status, lang),
                    )
                else:
                    d = self.say(
                        "order",
                        f"CancelOrder refused: {call.detail}",
                        "cancel_refused",
                        order_id=p.order_id,
                        status=tpl.status_name(status, lang) or "-",
                        advice=tpl.advice("shipped_cancel", lang),
                    )
                d.order_call = call
                return d
            if not call.ok:
                return self.order_error(call, p.intent)
            self.succeeded()
            s.pending = None
            resp: orders_pb2.CancelOrderResponse = call.response
            fee = resp.fee.cents
            total = resp.order.total
            fee_text = (
                tpl.advice("fee_charged", lang, fee=tpl.money(resp.fee.currency, fee))
                if fee > 0
                else tpl.advice("fee_free", lang)
            )
            refund_text = (
                tpl.advice("refund_back", lang, refund=tpl.money(total.currency, total.cents - fee))
                if _ts(resp.order.paid_at) is not None
                else tpl.advice("nothing_paid", lang)
            )
            d = self.say(
                "order",
                "cancelled after confirmation",
                "cancelled",
                order_id=p.order_id,
                fee_text=fee_text,
                refund_text=refund_text,
            )
            d.order_call = call
            return d
        if p.intent == "change_shipping_address":
            fields = {k: v for k, v in p.address.items() if k in _ADDRESS_FIELDS and v}
            call = await self.deps.orders.change_shipping_address(
                user, p.order_id, orders_pb2.Address(**fields)
            )
            if call.failed:
                return self.busy(call, p)
            if not call.ok:
                if call.code == "FAILED_PRECONDITION":
                    s.pending = None
                    d = self.say(
                        "order",
                        f"address change refused: {call.detail}",
                        "address_refused",
                        order_id=p.order_id,
                        status=tpl.status_name("shipped", lang),
                        advice="",
                    )
                    d.order_call = call
                    return d
                if call.code == "INVALID_ARGUMENT":
                    # the order system's reason, and the address asked for again (it was "sorry,
                    # something went wrong" and the request was lost)
                    p.awaiting = "address"
                    p.address = {
                        k: p.address[k] for k in ("name", "phone", "country") if k in p.address
                    }
                    d = self.say(
                        "ask",
                        f"address rejected: {call.detail}",
                        "address_invalid",
                        order_id=p.order_id,
                    )
                    d.order_call = call
                    return d
                return self.order_error(call, p.intent)
            self.succeeded()
            s.pending = None
            same_place = bool(p.current) and p.address.get("line1") == p.current.get("line1")
            d = self.say(
                "order",
                "address changed after confirmation",
                "contact_changed" if same_place else "address_changed",
                order_id=p.order_id,
                address=followups.address_text(p.address),
            )
            d.order_call = call
            return d
        s.pending = None
        return self.clarify()

    async def create_return(self, p: Pending) -> Decision:
        s, lang = self.state, self.lang
        call = await self.deps.orders.create_return(
            self.turn.user_id, p.order_id, p.product_ids, p.reason
        )
        if call.failed:
            return self.busy(call, p)
        if not call.ok:
            if call.code == "FAILED_PRECONDITION":
                s.pending = None
                d = self.say(
                    "order",
                    f"CreateReturn refused: {call.reason or call.detail}",
                    "return_refused",
                    order_id=p.order_id,
                    why=tpl.advice(RETURN_REFUSALS.get(call.reason, "return_generic"), lang),
                )
                d.order_call = call
                return d
            return self.order_error(call, p.intent)
        self.succeeded()
        s.pending = None
        # the returned order is the one "it" / "my money" means next: "how long until I get my
        # money back?" two turns after the return listed every order
        s.last_order_id, s.last_order_turn = p.order_id, s.turn
        r: orders_pb2.ReturnRequest = call.response
        chosen = [
            c.label_in(self.lang)
            for c in p.items
            if not p.product_ids or c.order_id in p.product_ids
        ]
        d = self.say(
            "order",
            "return created",
            "return_created",
            return_id=r.return_id,
            order_id=p.order_id,
            items=tpl.join_list(chosen, lang) or tpl.advice("all_items", lang),
            refund=tpl.money(r.refund_amount.currency, r.refund_amount.cents),
        )
        d.order_call = call
        return d


_ADDRESS_FIELDS = frozenset(orders_pb2.Address.DESCRIPTOR.fields_by_name)


def _space(language: str) -> str:
    return "" if language == "zh" else " "
