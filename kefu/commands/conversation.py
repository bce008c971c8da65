"""`kefu demo` and `kefu chat`: talk to the running stack as a shopper, and the replay engine
the conversation tests share.

Conversation scripts (data/demo/conversations.yaml, tests/conversations/*.yaml)::

    conversations:
      - id: zh-track                # unique
        user: u1001                 # the customer (the demo users u1001 zh, u2001 en)
        language: zh                # the reply language every turn must have (zh | en)
        title: 查物流                # shown by the demo
        turns:
          - say: 我的快递到哪了          # a customer message ...
            expect: ask                 # ... and the action the bot must take (or a list)
            slots: {awaiting: order_choice}   # optional: slots the reply must carry
            contains: ["7730"]          # optional: text the reply must contain
            handoff_reason: dispute     # optional, for handoff turns
          - say: "{order:shipped}"      # placeholder: a real seeded order id, looked up now
            expect: order
          - control: release            # the human agent hands the conversation back
          - outage: start               # stop OrderService (local stack) ... `outage: end`

Placeholders ``{order:<kind>}`` are resolved at replay time from MongoDB ``orders`` by the
conversation's user (see ORDER_QUERIES): seeded ids are never hard-coded, so a re-seed or other
seed data still works. ``{order:other_user}`` is someone else's order, ``{order:missing}`` an id
that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import yaml

from services.runtime.settings import (
    TOPIC_CONTROL,
    TOPIC_DLQ,
    TOPIC_HANDOFF,
    TOPIC_INBOUND,
    TOPIC_OUTBOUND,
    Settings,
    SettingsError,
    load_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_FILE = REPO_ROOT / "data" / "demo" / "conversations.yaml"
ACTIONS = ("answer", "faq", "ask", "order", "clarify", "handoff", "forward")
TURN_TIMEOUT_S = 30.0
RELEASE_TIMEOUT_S = 15.0
SLOW_TURN_MS = 500.0


class ScriptError(ValueError):
    """A conversation script is malformed; the message names the file, conversation and turn."""


class StackNotUp(click.ClickException):
    """The running stack cannot be reached; the message says how to start it."""


# -- scripts ----------------------------------------------------------------------------------------
@dataclass
class Step:
    kind: str  # say | control | outage
    text: str = ""
    expect: tuple[str, ...] = ()
    slots: dict[str, str] = field(default_factory=dict)
    contains: tuple[str, ...] = ()
    handoff_reason: str = ""


@dataclass
class Script:
    id: str
    user: str
    language: str
    title: str
    steps: list[Step]
    source: str = ""


def load_scripts(path: Path) -> list[Script]:
    """Read and validate a conversations file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScriptError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ScriptError(f"{path}: not valid YAML: {exc}") from None
    items = data.get("conversations") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ScriptError(f"{path}: expected a mapping with a non-empty 'conversations' list")
    scripts: list[Script] = []
    seen: set[str] = set()
    for n, item in enumerate(items, 1):
        where = f"{path.name}: conversation {n}"
        if not isinstance(item, dict):
            raise ScriptError(f"{where}: expected a mapping with id, user, language, turns")
        cid = str(item.get("id", ""))
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,60}", cid) or cid in seen:
            raise ScriptError(f"{where}: 'id' must be unique, 1-60 letters, digits, '_' or '-'")
        seen.add(cid)
        user = str(item.get("user", ""))
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", user):
            raise ScriptError(f"{where} ({cid}): 'user' must be a user id such as u1001")
        language = str(item.get("language", ""))
        if language not in ("zh", "en"):
            raise ScriptError(f"{where} ({cid}): 'language' must be zh or en")
        turns = item.get("turns")
        if not isinstance(turns, list) or not turns:
            raise ScriptError(f"{where} ({cid}): 'turns' must be a non-empty list")
        steps = [_step(f"{where} ({cid}) turn {t}", raw) for t, raw in enumerate(turns, 1)]
        scripts.append(
            Script(cid, user, language, str(item.get("title", cid)), steps, source=path.name)
        )
    return scripts


def _step(where: str, raw: Any) -> Step:
    if not isinstance(raw, dict):
        raise ScriptError(f"{where}: expected a mapping (say/expect, control or outage)")
    if "control" in raw:
        if raw["control"] != "release":
            raise ScriptError(f"{where}: the only control action is 'release'")
        return Step("control", "release")
    if "outage" in raw:
        if raw["outage"] not in ("start", "end"):
            raise ScriptError(f"{where}: outage must be 'start' or 'end'")
        return Step("outage", str(raw["outage"]))
    text = raw.get("say")
    if isinstance(text, (int, float, bool)):
        # YAML reads say: 13912345678 as a number and say: yes as true
        raise ScriptError(
            f"{where}: YAML read 'say' as the {type(text).__name__} {text!r}: quote the message"
        )
    if not isinstance(text, str) or not text.strip():
        raise ScriptError(f"{where}: 'say' must be the customer's message")
    expect = raw.get("expect")
    expected = tuple(expect) if isinstance(expect, list) else (expect,)
    if not expected or any(e not in ACTIONS for e in expected):
        raise ScriptError(f"{where}: 'expect' must be one of {', '.join(ACTIONS)} (or a list)")
    slots = raw.get("slots") or {}
    contains = raw.get("contains") or []
    if not isinstance(slots, dict) or not isinstance(contains, list):
        raise ScriptError(f"{where}: 'slots' must be a mapping and 'contains' a list")
    return Step(
        "say",
        text,
        tuple(str(e) for e in expected),
        {str(k): str(v) for k, v in slots.items()},
        tuple(str(c) for c in contains),
        str(raw.get("handoff_reason", "")),
    )


# -- placeholders: real seeded order ids --------------------------------------------------------------
def _order_queries(now: dt.datetime) -> dict[str, tuple[dict[str, Any], list[tuple[str, int]]]]:
    """kind → (MongoDB filter beside user_id, sort): what each placeholder means."""
    newest = [("created_at", -1)]
    return {
        "pending": ({"status": "pending"}, newest),
        "paid": ({"status": "paid"}, [("paid_at", -1)]),  # newest payment: free cancellation
        "shipped": ({"status": "shipped"}, newest),
        "delivered": (
            {"status": "delivered", "return_deadline": {"$gt": now}, "refund.status": "none"},
            newest,
        ),
        "delivered_old": ({"status": "delivered", "return_deadline": {"$lt": now}}, newest),
        "refund_pending": ({"refund.status": "pending"}, newest),
        "cancelled": ({"status": "cancelled"}, newest),
    }


ORDER_QUERIES = (*_order_queries(dt.datetime.now(dt.UTC)), "other_user", "missing")
_PLACEHOLDER = re.compile(r"\{order:([a-z_]+)\}")


class Resolver:
    """Turns {order:<kind>} into real order ids of the conversation's user (MongoDB)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.cache: dict[tuple[str, str], str] = {}

    def order_id(self, user: str, kind: str) -> str:
        if (user, kind) in self.cache:
            return self.cache[(user, kind)]
        orders = self.db["orders"]
        if kind == "other_user":
            doc = orders.find_one({"user_id": {"$ne": user}}, sort=[("_id", 1)])
        elif kind == "missing":
            rng = random.Random(user)
            while True:
                candidate = str(rng.randrange(10**9, 10**10))
                if orders.find_one({"_id": candidate}) is None:
                    doc = {"_id": candidate}
                    break
        else:
            queries = _order_queries(dt.datetime.now(dt.UTC))
            if kind not in queries:
                raise ScriptError(
                    f"unknown placeholder {{order:{kind}}}: use one of {', '.join(ORDER_QUERIES)}"
                )
            extra, sort = queries[kind]
            doc = orders.find_one({"user_id": user, **extra}, sort=sort)
        if doc is None:
            raise ScriptError(
                f"user {user} has no {kind} order left (demo data is used up): "
                "run `kefu seed` to reset it"
            )
        self.cache[(user, kind)] = str(doc["_id"])
        return self.cache[(user, kind)]

    def fill(self, text: str, user: str) -> str:
        return _PLACEHOLDER.sub(lambda m: self.order_id(user, m.group(1)), text)


# -- talking to the stack -----------------------------------------------------------------------------
@dataclass
class Reply:
    """What came back for one customer message."""

    message_id: str
    sent_text: str
    outbound: dict[str, Any] | None = None
    handoff: dict[str, Any] | None = None
    dead_letter: dict[str, Any] | None = None
    latency_ms: float = 0.0
    outbound_count: int = 0  # more than one would be a duplicate reply

    @property
    def envelope(self) -> dict[str, Any] | None:
        return self.outbound or self.handoff

    @property
    def section(self) -> dict[str, Any]:
        env = self.envelope
        return dict(env.get("reply", {})) if env else {}

    @property
    def action(self) -> str:
        return str(self.section.get("action", "")) or ("dlq" if self.dead_letter else "none")


class Session:
    """A producer to kefu.inbound.v1 / kefu.control.v1 and a consumer of outbound, handoff and
    DLQ, matching what comes back to what was sent by message id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.replies: dict[str, Reply] = {}
        self.sent_at: dict[str, float] = {}
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        from services.runtime.bus import aiokafka_security_kwargs

        security = aiokafka_security_kwargs(self.settings)
        bootstrap = self.settings.kafka_bootstrap
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **security)
        self.consumer = AIOKafkaConsumer(
            TOPIC_OUTBOUND,
            TOPIC_HANDOFF,
            TOPIC_DLQ,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="latest",
            **security,
        )
        try:
            await asyncio.wait_for(self.producer.start(), timeout)
            await asyncio.wait_for(self.consumer.start(), timeout)
            # be positioned at the end of every partition before the first message goes out
            deadline = time.monotonic() + timeout
            while not self.consumer.assignment():
                if time.monotonic() > deadline:
                    raise TimeoutError("no partitions assigned")
                await self.consumer.getmany(timeout_ms=200)
            for tp in self.consumer.assignment():
                await self.consumer.position(tp)
        except Exception as exc:
            await self.stop()
            raise StackNotUp(
                f"cannot reach Kafka at {bootstrap} ({type(exc).__name__}: {exc}); "
                "start the stack with `kefu stack up` (and `kefu seed`)"
            ) from None
        self._task = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in (getattr(self, "consumer", None), getattr(self, "producer", None)):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()

    async def _collect(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    self._take(record.topic, record.value)

    def _take(self, topic: str, raw: bytes | None) -> None:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return  # not ours: other producers share these topics
        if topic == TOPIC_DLQ:
            payload = str(data.get("payload", ""))
            mid = next((m for m in self.replies if m in payload), None)
        else:
            mid = data.get("messageId")
        reply = self.replies.get(mid or "")
        if reply is None:
            return
        if topic == TOPIC_OUTBOUND:
            reply.outbound_count += 1
            reply.outbound = reply.outbound or data
        elif topic == TOPIC_HANDOFF and reply.handoff is None:
            reply.handoff = data
        elif topic == TOPIC_DLQ:
            reply.dead_letter = data
        if not reply.latency_ms:
            reply.latency_ms = (time.perf_counter() - self.sent_at[reply.message_id]) * 1000.0
        self._arrived.set()

    def track(self, message_id: str, text: str = "") -> Reply:
        """Collect what comes back for a message id this session did not send itself."""
        reply = self.replies.setdefault(message_id, Reply(message_id, text))
        self.sent_at.setdefault(message_id, time.perf_counter())
        return reply

    async def send(self, conversation_id: str, user: str, text: str) -> Reply:
        message_id = uuid.uuid4().hex
        reply = Reply(message_id, text)
        self.replies[message_id] = reply
        now = dt.datetime.now(dt.UTC)
        payload = {
            "messageId": message_id,
            "conversationId": conversation_id,
            "userId": user,
            "channel": "cli",
            "text": text,
            "sentAt": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        }
        self.sent_at[message_id] = time.perf_counter()
        await self.producer.send_and_wait(
            TOPIC_INBOUND,
            json.dumps(payload, ensure_ascii=False).encode(),
            key=conversation_id.encode(),
        )
        return reply

    async def wait(self, reply: Reply, timeout: float = TURN_TIMEOUT_S) -> Reply:
        """Until the reply is complete: outbound (and handoff for a handoff), handoff for a
        forward, or a dead letter."""
        deadline = time.monotonic() + timeout

        def complete() -> bool:
            if reply.dead_letter is not None:
                return True
            action = reply.section.get("action")
            if action == "handoff":
                return reply.outbound is not None and reply.handoff is not None
            return action is not None

        while not complete():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.5))
        return reply

    async def release(self, conversation_id: str, agent_id: str = "agent-cli") -> None:
        now = dt.datetime.now(dt.UTC)
        event = {
            "eventId": uuid.uuid4().hex,
            "conversationId": conversation_id,
            "action": "release",
            "agentId": agent_id,
            "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        await self.producer.send_and_wait(
            TOPIC_CONTROL, json.dumps(event).encode(), key=conversation_id.encode()
        )


async def wait_released(db: Any, conversation_id: str, timeout: float = RELEASE_TIMEOUT_S) -> bool:
    """The control agent has applied the release (dialogue_state shows no active handoff)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = await asyncio.to_thread(db["dialogue_state"].find_one, {"_id": conversation_id})
        if doc is not None and not (doc.get("handoff") or {}).get("active"):
            return True
        await asyncio.sleep(0.2)
    return False


# -- replay -------------------------------------------------------------------------------------------
@dataclass
class TurnResult:
    script: Script
    step: Step
    reply: Reply
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check(step: Step, reply: Reply, language: str) -> list[str]:
    """What is wrong with this reply against the script (empty: as expected)."""
    section = reply.section
    if not section:
        if reply.dead_letter:
            return [f"dead-lettered: {reply.dead_letter.get('reason')}"]
        return ["no reply"]
    problems: list[str] = []
    action = section.get("action", "")
    if action not in step.expect:
        problems.append(f"action {action}, expected {'/'.join(step.expect)}")
    if action == "forward":
        if reply.outbound is not None:
            problems.append("forward turn reached kefu.outbound.v1 (the bot must stay silent)")
    elif section.get("language") != language:
        problems.append(f"reply language {section.get('language')}, expected {language}")
    for key, value in step.slots.items():
        got = section.get("slots", {}).get(key)
        if got != value:
            problems.append(f"slot {key}={got!r}, expected {value!r}")
    text = str(section.get("text", ""))
    problems += [f"reply lacks {c!r}" for c in step.contains if c not in text]
    if step.handoff_reason and section.get("handoffReason") != step.handoff_reason:
        problems.append(
            f"handoff reason {section.get('handoffReason')!r}, expected {step.handoff_reason!r}"
        )
    return problems


OutageHook = Callable[[str], Awaitable[None]]


async def replay(
    session: Session,
    db: Any,
    scripts: Sequence[Script],
    on_turn: Callable[[TurnResult], None] = lambda r: None,
    outage: OutageHook | None = None,
    timeout: float = TURN_TIMEOUT_S,
) -> list[TurnResult]:
    """Play every script through the stack, one turn at a time, checking each reply."""
    resolver = Resolver(db)
    results: list[TurnResult] = []
    for script in scripts:
        conversation_id = f"{script.id}-{uuid.uuid4().hex[:8]}"
        for step in script.steps:
            if step.kind == "control":
                await session.release(conversation_id)
                if not await wait_released(db, conversation_id):
                    raise click.ClickException(
                        f"{script.id}: the release was not applied within {RELEASE_TIMEOUT_S:.0f} s "
                        "(is the reply service consuming kefu.control.v1?)"
                    )
                continue
            if step.kind == "outage":
                if outage is None:
                    raise click.ClickException(f"{script.id}: this run cannot stop OrderService")
                await outage(step.text)
                continue
            # placeholders may appear in the message and in what the reply must contain
            step = replace(
                step,
                text=resolver.fill(step.text, script.user),
                slots={k: resolver.fill(v, script.user) for k, v in step.slots.items()},
                contains=tuple(resolver.fill(c, script.user) for c in step.contains),
            )
            reply = await session.wait(
                await session.send(conversation_id, script.user, step.text), timeout
            )
            result = TurnResult(script, step, reply, check(step, reply, script.language))
            results.append(result)
            on_turn(result)
    return results


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(results: Sequence[TurnResult]) -> dict[str, Any]:
    latencies = [r.reply.latency_ms for r in results if r.reply.section]
    out: dict[str, Any] = {
        "turns": len(results),
        "expected_action": sum(
            1 for r in results if r.step.expect and r.reply.action in r.step.expect
        ),
        "all_checks": sum(1 for r in results if r.ok),
    }
    if latencies:
        out.update(
            p50_ms=round(percentile(latencies, 50), 1),
            p95_ms=round(percentile(latencies, 95), 1),
            p99_ms=round(percentile(latencies, 99), 1),
        )
    # time inside each stage (the envelope's own record), to see where the time goes
    per_stage: dict[str, list[float]] = {}
    for r in results:
        for lat in (r.reply.envelope or {}).get("latencies", []):
            per_stage.setdefault(str(lat.get("stage")), []).append(float(lat.get("ms", 0.0)))
    if per_stage:
        out["stage_p50_ms"] = {k: round(percentile(v, 50), 1) for k, v in per_stage.items()}
    return out


# -- the local stack: preflight and the orders outage --------------------------------------------------
def preflight(settings: Settings, ports: Any = None) -> Any:
    """MongoDB reachable and, for a local stack, every service healthy; returns the database."""
    from services.runtime.mongo import sync_db

    db = sync_db(settings, timeout_ms=3000)
    try:
        db.command("ping")
    except Exception as exc:
        raise StackNotUp(
            f"cannot reach MongoDB at {settings.mongo_uri} ({type(exc).__name__}); "
            "start the stack with `kefu stack up` and load data with `kefu seed`"
        ) from None
    from kefu import localstack
    from kefu import stack as stacklib

    paths = localstack.stack_config_from_settings(settings).paths
    if localstack.Supervisor(paths).names():  # a stack `kefu stack up` manages
        rows = stacklib.status(settings, ports)
        bad = [r["component"] for r in rows if not r["healthy"]]
        if bad:
            raise StackNotUp(
                f"the stack is not healthy: {', '.join(bad)} not ready; "
                "see `kefu stack status` and start it with `kefu stack up`"
            )
        web = (ports or stacklib.ServicePorts.defaults(settings)).web
        wait_for_faq(web["reply"], say=lambda line: click.echo(line, err=True))
        wait_for_recommender(web["recommend"])
    if db["orders"].find_one({}) is None:
        raise StackNotUp("no orders in MongoDB: load the demo data with `kefu seed`")
    return db


def local_outage(settings: Settings, ports: Any = None) -> OutageHook:
    """Stop / restart OrderService of the local stack (what `outage: start|end` does)."""
    from kefu import localstack
    from kefu import stack as stacklib

    async def outage(what: str) -> None:
        sup = localstack.Supervisor(localstack.stack_config_from_settings(settings).paths)
        if what == "start":
            await asyncio.to_thread(sup.stop, "orders")
        else:
            await asyncio.to_thread(
                stacklib.up, settings, ports, ("orders",), 120.0, lambda line: None
            )
            # the reply stage reconnects within about a second; wait for it to say so
            web = (ports or stacklib.ServicePorts.defaults(settings)).web["reply"]
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline:
                if await asyncio.to_thread(_orders_ok_in_reply, web):
                    return
                await asyncio.sleep(0.5)

    return outage


def _readiness(port: int) -> dict[str, Any]:
    """A stage's /readyz document ({} when it cannot be read)."""
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            body: dict[str, Any] = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:  # 503 while any check fails: read which one
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            return {}
    except (OSError, ValueError):
        return {}
    return body


def _orders_ok_in_reply(port: int) -> bool:
    """The reply stage's /readyz says its OrderService channel is usable."""
    return bool((_readiness(port).get("orders") or {}).get("ok"))


def wait_for_faq(port: int, timeout: float = 60.0, say: Callable[[str], None] = print) -> str:
    """After `kefu seed` the reply stage reads and embeds the FAQ within ~15-30 s; the demo
    waits for it so its FAQ turns show FAQ answers. Returns the stage's FAQ detail."""
    deadline = time.monotonic() + timeout
    told = False
    detail = ""
    while time.monotonic() < deadline:
        body = _readiness(port)
        detail = str((body.get("faq") or {}).get("detail", ""))
        if body.get("faq_mode") == "semantic search" or "no encoder" in detail:
            return detail
        if not told:
            say("waiting for the reply stage to load the FAQ (it re-reads it every 15 s) ...")
            told = True
        time.sleep(1.0)
    return detail


def wait_for_recommender(port: int, timeout: float = 60.0) -> str:
    """After `kefu seed` the recommend stage loads the new model and catalog within ~10 s;
    conversations that ask for suggestions need them. Returns the stage's recommender detail
    (at once when no model is published: there is nothing to wait for)."""
    deadline = time.monotonic() + timeout
    detail = ""
    while time.monotonic() < deadline:
        body = _readiness(port)
        detail = str((body.get("recommender") or {}).get("detail", ""))
        if _LOADED_CATALOG.search(detail) or "no recommend model" in detail:
            return detail
        time.sleep(1.0)
    return detail


_LOADED_CATALOG = re.compile(r"\b[1-9]\d* products\b")


# -- printing -------------------------------------------------------------------------------------------
def describe(reply: Reply) -> str:
    """One annotation line: intent, sentiment, action, latency."""
    env = reply.envelope or {}
    nlu, senti, section = env.get("nlu", {}), env.get("sentiment", {}), reply.section
    parts = [
        f"intent={nlu.get('intent', '-')} {float(nlu.get('confidence', 0)):.2f}",
        f"sentiment={senti.get('label', '-')}",
        f"action={reply.action}",
    ]
    if section.get("faqId"):
        parts.append(f"faq={section['faqId']} {float(section.get('faqScore', 0)):.3f}")
    call = section.get("orderCall")
    if call:
        parts.append(f"rpc={call.get('rpc')}:{call.get('code')}")
    if section.get("handoffReason"):
        parts.append(f"handoff={section['handoffReason']}/{section.get('handoffPriority', '')}")
    parts.append(f"{reply.latency_ms:.0f} ms")
    stages = env.get("latencies", [])
    if stages and reply.latency_ms > SLOW_TURN_MS:  # say where the time went
        slowest = max(stages, key=lambda lat: float(lat.get("ms", 0.0)))
        parts.append(f"slowest stage {slowest.get('stage')} {float(slowest.get('ms', 0)):.0f} ms")
    return " · ".join(parts)


def _print_turn(result: TurnResult, width: int = 100) -> None:
    reply, script = result.reply, result.script
    mark = click.style("✓", fg="green") if result.ok else click.style("✗", fg="red")
    click.echo(f"  {script.user} › {reply.sent_text}")
    click.echo(click.style(f"    [{describe(reply)}]", dim=True))
    text = str(reply.section.get("text", ""))
    if reply.action == "forward":
        text = "(silent: forwarded to the human agent on kefu.handoff.v1)"
    for line in (text or "(no reply)").splitlines():
        click.echo(f"  {mark} bot › {line[: width * 2]}")
        mark = " "
    for problem in result.problems:
        click.echo(click.style(f"      expected differently: {problem}", fg="yellow"))


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.option(
    "--file",
    "path",
    type=click.Path(path_type=Path),
    default=DEMO_FILE,
    show_default=True,
    help="Conversation scripts to replay.",
)
@click.option("--only", multiple=True, help="Replay only these conversation ids (repeatable).")
@click.option("--no-outage", is_flag=True, help="Skip conversations that stop OrderService.")
@click.option("--timeout", default=TURN_TIMEOUT_S, show_default=True, help="Seconds per reply.")
def demo(path: Path, only: tuple[str, ...], no_outage: bool, timeout: float) -> None:
    """Replay the sample conversations through the running stack and show each turn."""
    settings = _settings()
    try:
        scripts = load_scripts(path)
    except ScriptError as exc:
        raise click.ClickException(str(exc)) from None
    if only:
        unknown = set(only) - {s.id for s in scripts}
        if unknown:
            raise click.ClickException(f"no conversation {', '.join(sorted(unknown))} in {path}")
        scripts = [s for s in scripts if s.id in only]
    if no_outage:
        scripts = [s for s in scripts if not any(st.kind == "outage" for st in s.steps)]
    db = preflight(settings)
    print_summary(asyncio.run(run_demo(settings, db, scripts, timeout)))


def print_summary(results: Sequence[TurnResult]) -> None:
    """The demo's last lines: how many turns went as scripted, latency; then one JSON line."""
    stats = summary(results)
    click.echo("")
    click.echo(
        f"{stats['expected_action']}/{stats['turns']} turns reached their expected action "
        f"({stats['all_checks']} passed every check); latency "
        f"p50 {stats.get('p50_ms', '-')} ms, p95 {stats.get('p95_ms', '-')} ms, "
        f"p99 {stats.get('p99_ms', '-')} ms (send to reply, through every stage)"
    )
    click.echo(json.dumps(stats))


async def run_demo(
    settings: Settings, db: Any, scripts: Sequence[Script], timeout: float, ports: Any = None
) -> list[TurnResult]:
    """Replay ``scripts`` printing every turn (``ports``: the local stack's web ports)."""
    session = Session(settings)
    await session.start()
    current = {"id": ""}

    def show(result: TurnResult) -> None:
        if result.script.id != current["id"]:
            current["id"] = result.script.id
            click.echo(
                click.style(
                    f"\n== {result.script.title} ({result.script.id}, {result.script.language})",
                    bold=True,
                )
            )
        _print_turn(result)

    async def outage(what: str) -> None:
        click.echo(
            click.style(
                f"  -- OrderService {'stopped' if what == 'start' else 'restarted'} --",
                fg="magenta",
            )
        )
        await local_outage(settings, ports)(what)

    try:
        return await replay(session, db, scripts, show, outage, timeout)
    except ScriptError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        with contextlib.suppress(Exception):  # a restart after an aborted outage
            if any(st.kind == "outage" for s in scripts for st in s.steps):
                await local_outage(settings, ports)("end")
        await session.stop()


@click.command()
@click.option("--user", default="u1001", show_default=True, help="The customer to chat as.")
@click.option("--timeout", default=TURN_TIMEOUT_S, show_default=True, help="Seconds per reply.")
def chat(user: str, timeout: float) -> None:
    """Talk to the running stack as a customer (/release hands back from a human, /quit ends)."""
    if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", user):
        raise click.BadParameter(
            "a user id has 1-64 letters, digits, '_' or '-'", param_hint="--user"
        )
    settings = _settings()
    db = preflight(settings)
    asyncio.run(_chat(settings, db, user, timeout))


async def _chat(settings: Settings, db: Any, user: str, timeout: float) -> None:
    session = Session(settings)
    await session.start()
    conversation_id = f"chat-{user}-{uuid.uuid4().hex[:8]}"
    click.echo(
        f"conversation {conversation_id} as {user}; /release hands back from a person, /quit ends"
    )
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/quit", "/exit"):
                break
            if text == "/release":
                await session.release(conversation_id)
                released = await wait_released(db, conversation_id)
                click.echo("  (released to the bot)" if released else "  (release not applied yet)")
                continue
            reply = await session.wait(await session.send(conversation_id, user, text), timeout)
            click.echo(click.style(f"    [{describe(reply)}]", dim=True))
            if reply.action == "forward":
                click.echo(
                    "  bot › (silent: a person has this conversation; /release hands it back)"
                )
            elif reply.section:
                for out_line in str(reply.section.get("text", "")).splitlines():
                    click.echo(f"  bot › {out_line}")
            else:
                click.echo(f"  bot › (no reply within {timeout:.0f} s: check `kefu stack status`)")
    finally:
        await session.stop()
