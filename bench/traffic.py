"""Customer traffic for the pipeline benchmark and the reliability tests.

Sources, all turned into :class:`Dialogue` (one conversation, customer turns only):

* the built-in bilingual set below (what a shop's chat sees: orders, refunds, delivery, account,
  complaints, small talk, mixed zh/en, typos, emoji, PII), used by default;
* a JSON-lines file of dialogues (``--data``), one object per line::

      {"dialogue_id": "...", "language": "zh", "customer_turns": ["...", "..."]}

* a YAML file of conversations (``--data``), e.g. the demo's ``data/demo/conversations.yaml``:
  the ``say`` of each turn is sent, control/outage steps are skipped, ``{order:<kind>}`` becomes
  one of the customer's orders.

Customers are the seeded ones *other than* the demo customers u1001 and u2001, so a benchmark
(which may cancel or change orders, as real traffic does) never uses up the demo's orders.

:func:`plan_messages` interleaves dialogues into the order messages are sent, keeping each
conversation's turns in order and spaced out (a customer waits for the answer before typing again).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ORDER_PLACEHOLDER = "{order_id}"

# Seeded customers (services/orders/seed.py) but the demo's two: zh u1002..u1018, en u2002..u2015.
ZH_USERS = tuple(f"u{1000 + i}" for i in range(2, 19))
EN_USERS = tuple(f"u{2000 + i}" for i in range(2, 16))
_DEMO_PLACEHOLDER = re.compile(r"\{order:[a-z_]+\}")

# fmt: off
ZH_DIALOGUES: tuple[tuple[str, ...], ...] = (
    ("在吗？", "我的订单到哪了", "订单号 {order_id}"),
    ("我买的东西怎么还没到啊，都一个星期了",),
    ("查一下物流，订单号是{order_id}",),
    ("你好，我想取消订单", "{order_id}", "是的，确定取消"),
    ("订单{order_id}能不能改一下收货地址？", "改成上海市浦东新区张江路88号 3栋502"),
    ("取消订单要收手续费吗",),
    ("退款什么时候到账？", "订单号{order_id}"),
    ("我要退货，质量太差了", "{order_id}"),
    ("你们支持哪些付款方式？可以用花呗吗",),
    ("付款一直失败，提示银行卡异常", "换了卡也不行"),
    ("怎么开发票？", "要增值税专用发票"),
    ("发票在哪里下载",),
    ("我要投诉！快递员态度太差了，东西直接扔在门口",),
    ("转人工", "人工客服！！！"),
    ("客服电话是多少",),
    ("怎么注册账号", "收不到验证码"),
    ("我想注销账号，怎么操作",),
    ("忘记密码了怎么办",),
    ("怎么修改绑定的手机号", "新号码是13912345678"),
    ("可以切换到另一个账号吗",),
    ("你们有哪些配送方式？能送到新疆吗",),
    ("一般几天能到？我在成都",),
    ("下单后多久发货",),
    ("我想下单，但是一直显示库存不足",),
    ("怎么给商品写评价",),
    ("取消订阅你们的促销短信",),
    ("退款政策是怎样的？七天无理由吗",),
    ("这款蓝牙耳机有黑色的吗",),
    ("推荐一款适合送女朋友的礼物",),
    ("有没有防摔的手机壳推荐",),
    ("谢谢！", "再见"),
    ("你好",),
    ("太慢了！！！等了半个月还没收到，你们到底怎么回事？？再不处理我就去12315投诉",),
    ("东西收到了，很满意，给个好评",),
    ("包装破损了，里面的杯子碎了一个", "可以补发吗"),
    ("我收到的颜色不对，我买的是白色的", "订单{order_id}"),
    ("为什么我的订单被取消了？我没有操作过",),
    ("优惠券用不了是怎么回事",),
    ("能便宜点吗？买两个",),
    ("我的order到哪了 pls",),
    ("快递一直显示在派送中，但是我没收到", "单号{order_id}"),
    ("帮我看看最近的订单",),
    ("退款还要多久😭",),
    ("你们是机器人吗",),
    ("今天天气怎么样",),
    ("我邮箱是 wang.test@example.com，把发票发给我",),
    ("地址写错了，赶紧帮我改一下！", "订单号{order_id}", "北京市朝阳区建国路1号"),
    ("修改订单里的数量，我要买三个",),
    ("已经付款了但订单还显示待付款",),
    ("银行卡扣了两次钱！！", "卡号6222021234567890123"),
    ("什么时候有双十一活动",),
    ("会员积分怎么用",),
    ("我想换货，尺码小了", "订单{order_id}"),
    ("零食的保质期是多久",),
    ("为什么运费这么贵",),
    ("那个……我昨天下的单，能加急吗",),
    ("耳机左边没声音", "买了不到一周", "能换新的吗"),
    ("请问可以货到付款吗",),
    ("我退货的包裹你们收到了吗？", "退货单号SF1234567890"),
    ("帮我把订单{order_id}取消掉，不想要了",),
    ("刚下单就降价了，能退差价吗",),
    ("海外可以寄吗？寄到新加坡",),
    ("我的账号被盗了！！里面还有余额",),
    ("你们的营业时间是几点到几点",),
    ("这个茶叶是今年的新茶吗", "有没有礼盒装"),
    ("发错货了，我要的是XL码，给我发成了M码",),
)

EN_DIALOGUES: tuple[tuple[str, ...], ...] = (
    ("Hi, where is my order?", "It's {order_id}"),
    ("My package has been stuck in transit for a week. Order {order_id}",),
    ("I want to cancel my order", "{order_id}", "yes please cancel it"),
    ("Can I change the shipping address on order {order_id}?", "New address: 221B Baker Street, London NW1 6XE"),
    ("Is there a fee for cancelling an order?",),
    ("When will I get my refund?", "order number is {order_id}"),
    ("I'd like to return an item, it arrived broken", "{order_id}"),
    ("What payment methods do you accept?",),
    ("My card keeps getting declined at checkout", "I tried two different cards"),
    ("How do I get an invoice for my purchase?",),
    ("I need a copy of my invoice for order {order_id}",),
    ("This is ridiculous. Your courier threw my parcel over the fence and it's damaged.",),
    ("Let me talk to a real person",),
    ("How can I contact customer service by phone?",),
    ("How do I create an account?",),
    ("Please delete my account and all my data",),
    ("I forgot my password",),
    ("How do I update my email address?", "the new one is emily.new@example.org"),
    ("Can I switch to my other account?",),
    ("What delivery options do you have?",),
    ("How long does shipping to Canada take?",),
    ("I can't register, the verification email never arrives",),
    ("How do I leave a review for a product?",),
    ("Unsubscribe me from the newsletter please",),
    ("What's your refund policy?",),
    ("Do you have this kettle in stock?",),
    ("Can you recommend a good book for a long flight?",),
    ("Any tea you'd recommend?",),
    ("thanks!", "bye"),
    ("hello",),
    ("I have been waiting THREE WEEKS. This is the worst service I have ever had. I want my money back NOW.",),
    ("Great service, the package arrived early. Thank you!",),
    ("The box was crushed and one mug is broken", "Can you send a replacement?"),
    ("I received the wrong colour, I ordered blue", "order {order_id}"),
    ("Why was my order cancelled? I didn't do anything",),
    ("My discount code doesn't work",),
    ("is my refund processed yet?? order {order_id}",),
    ("wheres my stuff",),
    ("Tracking says delivered but I never got it", "{order_id}"),
    ("Show me my recent orders",),
    ("Are you a bot?",),
    ("What's the weather like today?",),
    ("Call me back on +44 7911 123456 please",),
    ("I was charged twice!!", "card 4111 1111 1111 1111"),
    ("Can I add another item to order {order_id}?",),
    ("I paid but the order still says pending payment",),
    ("When is your next sale?",),
    ("How do loyalty points work?",),
    ("I need to exchange for a bigger size", "order {order_id}"),
    ("Can you expedite my order? I need it by Friday",),
    ("why is shipping so expensive",),
    ("i want to place an order for 3 of the same item, is there a bulk discount",),
    ("Do you ship to PO boxes?",),
    ("The headphones stopped working after two days 😡",),
    ("Hey, 我的订单 {order_id} 还没发货 why?",),
    ("Can I pay with Alipay or WeChat Pay?",),
    ("The left earbud has no sound", "I bought them last week", "Can I get a new pair?"),
    ("Do you offer cash on delivery?",),
    ("Did you receive my return parcel?", "I sent it back on Monday"),
    ("Please cancel order {order_id}, I don't need it anymore",),
    ("The price dropped right after I bought it, can I get the difference back?",),
    ("Someone hacked my account!! There's store credit on it",),
    ("What are your opening hours?",),
    ("is this coffee decaf", "do you have a gift box"),
    ("You sent me size M instead of XL",),
)
# fmt: on


class TrafficError(ValueError):
    """A traffic source cannot be read; the message names the file, line and what is expected."""


@dataclass(frozen=True)
class Dialogue:
    dialogue_id: str
    language: str  # zh | en | other: picks a customer of that language
    turns: tuple[str, ...]


@dataclass(frozen=True)
class PlannedMessage:
    """One customer message to send: which conversation, whose, which turn of it."""

    conversation_id: str
    user_id: str
    language: str
    text: str
    turn: int
    dialogue_id: str


def builtin_dialogues() -> list[Dialogue]:
    """The built-in set, zh and en alternating (a shop's traffic is mixed, not in blocks)."""
    zh = [Dialogue(f"builtin-zh-{i:03d}", "zh", turns) for i, turns in enumerate(ZH_DIALOGUES)]
    en = [Dialogue(f"builtin-en-{i:03d}", "en", turns) for i, turns in enumerate(EN_DIALOGUES)]
    out: list[Dialogue] = []
    for i in range(max(len(zh), len(en))):
        out += zh[i : i + 1] + en[i : i + 1]
    return out


def builtin_message_count() -> int:
    return sum(len(d.turns) for d in builtin_dialogues())


def _dialogue_from_obj(obj: Any, where: str, index: int) -> Dialogue:
    if not isinstance(obj, dict):
        raise TrafficError(
            f"{where}: expected an object with customer_turns, got {type(obj).__name__}"
        )
    turns_raw = obj.get("customer_turns", obj.get("turns", obj.get("messages")))
    if not isinstance(turns_raw, list) or not turns_raw:
        raise TrafficError(f"{where}: 'customer_turns' must be a non-empty list of strings")
    turns: list[str] = []
    for n, turn in enumerate(turns_raw):
        if isinstance(turn, dict) and not {"say", "text"} & set(turn):
            continue  # a scripted step (control: release, outage: start), not a customer turn
        # script turns are {"say": ...} with expectations beside it
        text = turn.get("say", turn.get("text")) if isinstance(turn, dict) else turn
        if not isinstance(text, str):
            raise TrafficError(f"{where}: turn {n} is not a string (or an object with 'say')")
        turns.append(_DEMO_PLACEHOLDER.sub(ORDER_PLACEHOLDER, text))
    if not turns:
        raise TrafficError(f"{where}: no customer turns")
    language = obj.get("language", "other")
    if not isinstance(language, str):
        raise TrafficError(f"{where}: 'language' must be a string like zh or en")
    dialogue_id = obj.get("dialogue_id", obj.get("id", f"dialogue-{index}"))
    return Dialogue(str(dialogue_id), language, tuple(turns))


def load_dialogues_jsonl(path: Path) -> list[Dialogue]:
    """Dialogues from a JSON-lines file (blank lines are skipped)."""
    if not path.is_file():
        raise TrafficError(f"{path}: no such file (expected JSON lines of dialogues)")
    dialogues: list[Dialogue] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrafficError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            dialogues.append(_dialogue_from_obj(obj, f"{path}:{lineno}", len(dialogues)))
    if not dialogues:
        raise TrafficError(f"{path}: holds no dialogues")
    return dialogues


def load_dialogues_yaml(path: Path) -> list[Dialogue]:
    """Dialogues from YAML: a list of conversations, or a mapping with a ``conversations`` list."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrafficError(f"{path}: cannot read YAML ({exc})") from None
    if isinstance(data, dict):
        data = data.get("conversations", data.get("dialogues"))
    if not isinstance(data, list) or not data:
        raise TrafficError(f"{path}: expected a list of conversations (or conversations: [...])")
    return [_dialogue_from_obj(obj, f"{path}: conversation {i}", i) for i, obj in enumerate(data)]


def load_dialogues(path: Path | None) -> tuple[list[Dialogue], str]:
    """The traffic source and its name: ``path`` (.jsonl, or .yaml/.yml) or the built-in set.

    The built-in set is the default rather than the demo's script: it is five times larger and
    has no scripted steps (agent releases, outages) that only make sense in a replay.
    """
    if path is None:
        return builtin_dialogues(), "builtin"
    if path.suffix in (".yaml", ".yml"):
        return load_dialogues_yaml(path), str(path)
    return load_dialogues_jsonl(path), str(path)


def _fill(
    text: str, user_id: str, order_ids: Mapping[str, Sequence[str]], rng: random.Random
) -> str:
    if ORDER_PLACEHOLDER not in text:
        return text
    own = order_ids.get(user_id)
    # a customer without known orders quotes a number that does not exist: also real traffic
    order_id = rng.choice(list(own)) if own else f"{rng.randrange(10**9, 10**10)}"
    return text.replace(ORDER_PLACEHOLDER, order_id)


def plan_messages(
    dialogues: Sequence[Dialogue],
    count: int,
    *,
    run_id: str,
    active: int = 16,
    order_ids: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
) -> list[PlannedMessage]:
    """``count`` messages from ``active`` conversations open at a time, in send order.

    Each send takes the next turn of the next open conversation (round robin), so a
    conversation's turns are ``active`` sends apart and always in order; a finished one is
    replaced by the next dialogue (cycling, with a fresh conversation id, when all are used).
    """
    if not dialogues:
        raise TrafficError("no dialogues to send")
    if count < 0 or active < 1:
        raise TrafficError("count must be >= 0 and active >= 1")
    rng = random.Random(seed)
    order_ids = order_ids or {}
    users = {"zh": ZH_USERS, "en": EN_USERS}
    next_dialogue = 0
    opened = 0

    def open_one() -> list[Any]:
        nonlocal next_dialogue, opened
        dialogue = dialogues[next_dialogue % len(dialogues)]
        next_dialogue += 1
        pool = users.get(dialogue.language, ZH_USERS + EN_USERS)
        user = pool[opened % len(pool)]
        conversation = f"bench-{run_id}-{opened}"
        opened += 1
        return [dialogue, conversation, user, 0]

    slots = [open_one() for _ in range(min(active, max(count, 1)))]
    plan: list[PlannedMessage] = []
    i = 0
    while len(plan) < count:
        slot = slots[i % len(slots)]
        dialogue, conversation, user, turn = slot
        plan.append(
            PlannedMessage(
                conversation_id=conversation,
                user_id=user,
                language=dialogue.language,
                text=_fill(dialogue.turns[turn], user, order_ids, rng),
                turn=turn,
                dialogue_id=dialogue.dialogue_id,
            )
        )
        slot[3] = turn + 1
        if slot[3] >= len(dialogue.turns):
            slots[i % len(slots)] = open_one()
        i += 1
    return plan
