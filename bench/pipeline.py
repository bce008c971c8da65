"""Benchmark: bilingual customer traffic through the RUNNING stack (`kefu stack up`).

Open loop: message i is due at t0 + i/rate whatever happened to earlier ones, and its ``sentAt``
is that due time, so a sender that falls behind cannot hide latency (no coordinated omission).
A message is answered by its first record on kefu.outbound.v1 or kefu.handoff.v1 (``forward``
turns only go to the handoff topic); end-to-end latency is that record's broker timestamp minus
``sentAt``. More than one outbound record for a message id is a duplicated reply; no answer within
the reply timeout is a lost message. Per-stage figures come from the envelope's latencies
(``ms`` inside the stage, ``wait`` = time since the previous stage finished minus ``ms``: queueing
and transport). CPU and peak RSS are sampled with psutil on the pids the stack's Supervisor
recorded. The encoder alone on the same texts gives the ceiling an encoder-bound pipeline can reach.

The reliability tests reuse :class:`TrafficDriver` and :func:`analyse`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from bench.bus import BenchError, check_kafka, client_kwargs
from bench.machine import machine
from bench.traffic import PlannedMessage, load_dialogues, plan_messages
from services.runtime.settings import (
    TOPIC_DLQ,
    TOPIC_HANDOFF,
    TOPIC_INBOUND,
    TOPIC_OUTBOUND,
    Settings,
)

STACK_HINT = "run `kefu stack up` first (and `kefu seed` for the demo customers and orders)"
ANSWER_TOPICS = (TOPIC_OUTBOUND, TOPIC_HANDOFF)


# --------------------------------------------------------------------------- records (pure)


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    conversation_id: str
    due: float  # epoch seconds: when it was due (= its sentAt)
    sent: float  # epoch seconds: when the producer was handed it
    language: str


@dataclass(frozen=True)
class Received:
    topic: str
    timestamp_ms: int  # broker/producer timestamp of the record
    message_id: str
    value: dict[str, Any]


def inbound_payload(msg: PlannedMessage, message_id: str, due: float) -> dict[str, Any]:
    """What a platform's chat backend publishes on kefu.inbound.v1 (proto3 JSON names)."""
    sent_at = dt.datetime.fromtimestamp(due, dt.UTC).isoformat(timespec="microseconds")
    return {
        "messageId": message_id,
        "conversationId": msg.conversation_id,
        "userId": msg.user_id,
        "channel": "bench",
        "text": msg.text,
        "sentAt": sent_at.replace("+00:00", "Z"),
        "metadata": {"dialogue": msg.dialogue_id, "turn": str(msg.turn)},
    }


def message_id_of(topic: str, value: dict[str, Any]) -> str | None:
    """The customer message a record belongs to (a DLQ record carries it inside its payload)."""
    if topic != TOPIC_DLQ:
        mid = value.get("messageId")
        return mid if isinstance(mid, str) else None
    payload = value.get("payload")
    if not isinstance(payload, str):
        return None
    try:
        inner = json.loads(payload)
    except (ValueError, RecursionError):  # poison payloads are exactly what lands here
        return None
    mid = inner.get("messageId") if isinstance(inner, dict) else None
    return mid if isinstance(mid, str) else None


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean (nearest-rank), rounded to 0.1; None for no values."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        index = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
        return round(ordered[index], 1)

    return {
        "n": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(ordered[-1], 1),
        "mean": round(sum(ordered) / len(ordered), 1),
    }


def _ts_seconds(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def stage_breakdown(envelopes: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per stage: time inside it (``ms``) and waiting before it (queue + transport)."""
    inside: dict[str, list[float]] = {}
    waiting: dict[str, list[float]] = {}
    for env in envelopes:
        previous = _ts_seconds(env.get("sentAt"))
        for lat in env.get("latencies", []):
            stage, ms = lat.get("stage"), float(lat.get("ms", 0.0))
            if not isinstance(stage, str):
                continue
            inside.setdefault(stage, []).append(ms)
            finished = _ts_seconds(lat.get("at"))
            if previous is not None and finished is not None:
                waiting.setdefault(stage, []).append(max(0.0, (finished - previous) * 1000 - ms))
            previous = finished
    out: dict[str, dict[str, Any]] = {}
    for stage, values in inside.items():
        p, w = percentiles(values), percentiles(waiting.get(stage, []))
        out[stage] = {
            "p50_ms": p["p50"], "p95_ms": p["p95"], "p99_ms": p["p99"], "max_ms": p["max"],
            "wait_p50_ms": w["p50"], "wait_p99_ms": w["p99"],
        }  # fmt: skip
    return out


def analyse(
    sent: Sequence[SentMessage], received: Sequence[Received], reply_timeout: float
) -> dict[str, Any]:
    """Loss, duplicates, DLQ, end-to-end latency and per-stage latency of one traffic run."""
    by_id = {s.message_id: s for s in sent}
    outbound: Counter[str] = Counter()
    first_answer: dict[str, Received] = {}
    dlq: dict[str, str] = {}
    dlq_details: list[str] = []
    for rec in received:
        if rec.message_id not in by_id:
            continue
        if rec.topic == TOPIC_DLQ:
            if rec.message_id not in dlq:
                dlq[rec.message_id] = str(rec.value.get("reason", "?"))
                stage = rec.value.get("stage", "?")
                dlq_details.append(
                    f"{stage}: {dlq[rec.message_id]}: {rec.value.get('detail', '')}"[:300]
                )
            continue
        if rec.topic == TOPIC_OUTBOUND:
            outbound[rec.message_id] += 1
        if rec.topic in ANSWER_TOPICS:
            best = first_answer.get(rec.message_id)
            if best is None or rec.timestamp_ms < best.timestamp_ms:
                first_answer[rec.message_id] = rec
    e2e: list[float] = []
    on_time: dict[str, Received] = {}
    for mid, rec in first_answer.items():
        ms = rec.timestamp_ms - by_id[mid].due * 1000.0
        if ms <= reply_timeout * 1000.0:
            e2e.append(ms)
            on_time[mid] = rec
    answered = len(on_time)
    late = len(first_answer) - answered
    lost = [m for m in by_id if m not in first_answer and m not in dlq]
    duplicated = {m: c for m, c in outbound.items() if c > 1}
    actions = Counter(
        str(r.value.get("reply", {}).get("action", "?"))
        for r in on_time.values()
        if r.topic == TOPIC_OUTBOUND
    )
    forwarded = sum(1 for r in on_time.values() if r.topic == TOPIC_HANDOFF)
    if forwarded:
        actions["forward(handoff topic only)"] += forwarded
    return {
        "sent": len(by_id),
        "answered": answered,
        "late": late,  # answered, but after the reply timeout
        "lost": len(lost),
        "lost_ids": sorted(lost)[:20],
        "dlq": len(dlq),
        "dlq_reasons": dict(Counter(dlq.values())),
        "dlq_details": dlq_details[:10],
        "duplicated_replies": sum(c - 1 for c in duplicated.values()),
        "duplicated_ids": sorted(duplicated)[:20],
        "e2e_ms": percentiles(e2e),
        "stages": stage_breakdown(r.value for r in on_time.values()),
        "actions": dict(actions),
        "languages": dict(Counter(r.value.get("language", "?") for r in on_time.values())),
    }


def backlog_growing(samples: Sequence[tuple[float, int]], rate: float) -> bool:
    """Whether the backlog (sent - answered) keeps growing over the second half of sending.

    In a steady state the backlog stays near rate x latency; a pipeline slower than the offered
    rate piles it up linearly. Growing means a slope above 5 % of the rate and at least 10
    messages more at the end than in the middle.
    """
    if len(samples) < 4:
        return False
    half = [s for s in samples if s[0] >= samples[0][0] + (samples[-1][0] - samples[0][0]) / 2]
    if len(half) < 3:
        return False
    xs = [t for t, _ in half]
    ys = [float(b) for _, b in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return slope > 0.05 * rate and ys[-1] - ys[0] >= 10


# --------------------------------------------------------------------------- resources


@dataclass
class ProcessUsage:
    name: str
    pid: int
    cpu_start: float
    cpu_end: float = 0.0
    peak_rss: int = 0
    gone: bool = False


class ResourceSampler:
    """Samples CPU time and RSS of named pids in a background thread (every ``interval`` s)."""

    def __init__(self, pids: Mapping[str, int], interval: float = 0.5) -> None:
        self.interval = interval
        self.usage: dict[str, ProcessUsage] = {}
        self._procs: dict[str, psutil.Process] = {}
        for name, pid in pids.items():
            try:
                proc = psutil.Process(pid)
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            self._procs[name] = proc
            self.usage[name] = ProcessUsage(name, pid, t.user + t.system)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._started = time.monotonic()
        self._stopped = self._started

    def __enter__(self) -> ResourceSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self._stopped = time.monotonic()

    def _sample(self) -> None:
        for name, proc in self._procs.items():
            u = self.usage[name]
            if u.gone:
                continue
            try:
                with proc.oneshot():
                    t = proc.cpu_times()
                    rss = proc.memory_info().rss
            except psutil.NoSuchProcess:
                u.gone = True  # restarted or crashed: reported, never silently averaged
                continue
            u.cpu_end = t.user + t.system
            u.peak_rss = max(u.peak_rss, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def report(self) -> dict[str, dict[str, Any]]:
        wall = max(1e-6, self._stopped - self._started)
        return {
            name: {
                "pid": u.pid,
                "cpu_s": round(u.cpu_end - u.cpu_start, 2),
                "cpu_pct": round(100.0 * (u.cpu_end - u.cpu_start) / wall, 1),
                "peak_rss_mb": round(u.peak_rss / 2**20, 1),
                **({"exited": True} if u.gone else {}),
            }
            for name, u in self.usage.items()
        }


def stack_pids(settings: Settings) -> dict[str, int]:
    from kefu import localstack
    from kefu.stack import SERVICES

    sup = localstack.Supervisor(localstack.stack_config_from_settings(settings).paths)
    pids = {}
    for name in (localstack.KAFKA, localstack.FERRETDB, *SERVICES):
        pid = sup.pid(name)
        if pid is not None:
            pids[name] = pid
    return pids


# --------------------------------------------------------------------------- traffic driver


@dataclass
class TrafficResult:
    sent: list[SentMessage]
    received: list[Received]
    backlog: list[tuple[float, int]]  # (seconds since start, sent - answered) while sending
    sender_lag_ms: list[float]
    send_window_s: float
    extra: dict[str, Any] = field(default_factory=dict)


class TrafficDriver:
    """A platform's chat backend: sends planned messages open loop, collects what comes back.

    Use as ``async with TrafficDriver(settings) as driver: result = await driver.run(...)``.
    The consumer is positioned at the end of the answer topics before anything is sent.
    """

    def __init__(
        self, settings: Settings, topics: Sequence[str] = (*ANSWER_TOPICS, TOPIC_DLQ)
    ) -> None:
        self.settings = settings
        self.topics = tuple(topics)
        self.received: list[Received] = []
        self._wanted: set[str] = set()
        self._answered: set[str] = set()
        self._wanted_offsets: set[tuple[int, int]] = set()
        self.dlq_by_source: dict[tuple[int, int], dict[str, Any]] = {}
        self.dead_lettered: set[str] = set()

    async def __aenter__(self) -> TrafficDriver:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        kwargs = client_kwargs(self.settings)
        # a platform keeps a message through a broker restart rather than failing it after
        # aiokafka's default 40 s
        self.producer = AIOKafkaProducer(
            **kwargs, acks="all", linger_ms=1, request_timeout_ms=180_000
        )
        self.consumer = AIOKafkaConsumer(
            *self.topics, **kwargs, group_id=None, auto_offset_reset="latest"
        )
        await self.producer.start()
        await self.consumer.start()
        while not self.consumer.assignment():
            await self.consumer.getmany(timeout_ms=200)
        for tp in self.consumer.assignment():
            await self.consumer.position(tp)  # resolves "latest" now, before sending
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def send_raw(
        self, records: Sequence[tuple[bytes | None, bytes | None]]
    ) -> list[tuple[int, int]]:
        """Send arbitrary (value, key) records to kefu.inbound.v1 (poison inputs in tests);
        returns their (partition, offset), whose DLQ records are then collected."""
        futures = [
            await self.producer.send(TOPIC_INBOUND, value, key=key) for value, key in records
        ]
        placed = [(meta.partition, meta.offset) for meta in await asyncio.gather(*futures)]
        self._wanted_offsets.update(placed)
        return placed

    def expect(self, message_ids: Iterable[str]) -> None:
        self._wanted.update(message_ids)

    def unanswered(self, message_ids: Iterable[str]) -> list[str]:
        return [m for m in message_ids if m not in self._answered]

    def first_answer(self, message_id: str) -> dict[str, Any] | None:
        """The first answer (outbound or handoff) received for ``message_id``, if any."""
        for r in self.received:
            if r.message_id == message_id and r.topic in ANSWER_TOPICS:
                return r.value
        return None

    def dead_letter_for(self, partition: int, offset: int) -> dict[str, Any] | None:
        """The DLQ record of the inbound record at (partition, offset), if one arrived."""
        return self.dlq_by_source.get((partition, offset))

    def _take(self, batches: Mapping[Any, Sequence[Any]]) -> None:
        for records in batches.values():
            for r in records:
                try:
                    value = json.loads(r.value)
                except (ValueError, TypeError, RecursionError):
                    continue  # not ours (other producers share the topics)
                if not isinstance(value, dict):
                    continue
                if r.topic == TOPIC_DLQ and value.get("sourceTopic") == TOPIC_INBOUND:
                    # proto3 JSON: int64 is a string, and a 0 (partition, offset) is left out
                    where = (
                        int(value.get("sourcePartition", 0)),
                        int(value.get("sourceOffset", 0)),
                    )
                    if where in self._wanted_offsets:
                        self.dlq_by_source[where] = value
                mid = message_id_of(r.topic, value)
                if mid is None or mid not in self._wanted:
                    continue
                self.received.append(Received(r.topic, r.timestamp, mid, value))
                if r.topic in ANSWER_TOPICS:
                    self._answered.add(mid)
                elif r.topic == TOPIC_DLQ:
                    self.dead_lettered.add(mid)

    async def poll(self, timeout_ms: int = 100) -> None:
        self._take(await self.consumer.getmany(timeout_ms=timeout_ms))

    async def wait_answers(self, message_ids: Iterable[str], timeout: float) -> list[str]:
        """Collect until every id is answered or ``timeout`` s; returns the unanswered ones."""
        ids = list(message_ids)
        deadline = time.monotonic() + timeout
        while self.unanswered(ids) and time.monotonic() < deadline:
            await self.poll(100)
        return self.unanswered(ids)

    async def collect_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.poll(100)

    async def run(
        self,
        plan: Sequence[PlannedMessage],
        rate: float,
        reply_timeout: float,
        *,
        settle: float = 2.0,
        message_ids: Sequence[str] | None = None,
        stop: asyncio.Event | None = None,
    ) -> TrafficResult:
        """Send ``plan`` at ``rate``/s (open loop; ``stop`` ends sending early), then wait for
        answers; ``settle`` s more are collected after the last answer so late duplicates are
        seen too."""
        ids = list(message_ids) if message_ids else [uuid.uuid4().hex for _ in plan]
        self.expect(ids)
        sent: list[SentMessage] = []
        lags: list[float] = []
        backlog: list[tuple[float, int]] = []
        start_wall = time.time() + 0.2
        start_mono = time.monotonic() + 0.2
        futures = []
        receiver_done = asyncio.Event()
        answered_before = len(self._answered)

        async def receive_while_sending() -> None:
            while not receiver_done.is_set():
                await self.poll(50)
                answered = len(self._answered) - answered_before
                backlog.append((time.monotonic() - start_mono, len(sent) - answered))

        receiver = asyncio.create_task(receive_while_sending())
        try:
            for i, (msg, mid) in enumerate(zip(plan, ids, strict=True)):
                if stop is not None and stop.is_set():
                    break
                due_mono = start_mono + i / rate
                delay = due_mono - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                due = start_wall + i / rate
                value = json.dumps(inbound_payload(msg, mid, due), ensure_ascii=False).encode()
                futures.append(
                    await self.producer.send(TOPIC_INBOUND, value, key=msg.conversation_id.encode())
                )
                now = time.time()
                lags.append(max(0.0, (now - due) * 1000.0))
                sent.append(SentMessage(mid, msg.conversation_id, due, now, msg.language))
            await asyncio.gather(*futures)  # every message is in the broker
        finally:
            receiver_done.set()
            await receiver
        window = time.monotonic() - start_mono
        await self.wait_answers([m.message_id for m in sent], reply_timeout)
        await self.collect_for(settle)
        return TrafficResult(sent, list(self.received), backlog, lags, window)


# --------------------------------------------------------------------------- the benchmark


@dataclass
class PipelineOptions:
    rate: float = 20.0
    duration: float = 30.0
    data_path: Path | None = None
    find_max: bool = False
    budget_ms: float = 100.0
    step_factor: float = 1.5
    # --find-max: after the first step over budget, this many bisections (geometric) between
    # the last good rate and the failed one; the 1.5x ladder alone under-reports by up to 1/3
    refine_steps: int = 2
    reply_timeout: float = 30.0
    active: int = 32
    encoder_ceiling: bool = True
    max_steps: int = 10
    warmup: int = 30  # messages sent (and answered) before measuring: first-use costs excluded
    # --find-max: seconds of the run at half the maximum, whose p99 is the reported figure. At
    # ~10 msg/s one 20 s step has ~200 messages, so its p99 is its second or third slowest
    # message (84-144 ms in three runs of the same code); 60 s gives ~600.
    half_max_duration: float = 60.0
    ports: Any = None  # kefu.stack.ServicePorts; None: the defaults for these settings
    seed: int = 0


def check_stack_ready(settings: Settings, ports: Any = None) -> None:
    from kefu import stack as stacklib

    rows = stacklib.status(settings, ports)
    bad = [
        f"{r['component']} ({'down' if not r['running'] else 'not ready'})"
        for r in rows
        if not r["healthy"]
    ]
    if bad:
        raise BenchError(
            f"the stack is not ready: {', '.join(bad)}; {STACK_HINT} (`kefu stack status` shows why)"
        )


def customer_order_ids(settings: Settings) -> dict[str, list[str]]:
    """The benchmark customers' real order numbers (read once), so their messages quote them."""
    from pymongo.errors import PyMongoError

    from bench.traffic import EN_USERS, ZH_USERS
    from services.runtime.mongo import sync_db

    db = sync_db(settings, timeout_ms=5000)
    orders: dict[str, list[str]] = {}
    try:
        for doc in db["orders"].find({"user_id": {"$in": [*ZH_USERS, *EN_USERS]}}, {"user_id": 1}):
            orders.setdefault(str(doc["user_id"]), []).append(str(doc["_id"]))
    except PyMongoError as exc:
        raise BenchError(
            f"cannot read orders from {settings.mongo_db} ({exc}): {STACK_HINT}"
        ) from None
    finally:
        db.client.close()
    if not orders:
        raise BenchError("the seeded customers have no orders: run `kefu seed` first")
    return orders


def encoder_ceiling(
    settings: Settings, texts: Sequence[str], batch_size: int = 32, rounds: int = 3
) -> dict[str, Any]:
    """Texts/s of the published encoder alone on these texts (same batch size as nlu), the
    best of ``rounds`` passes: a shared machine only ever slows a pass down (single passes
    right after `kefu stack up` ranged 143-277 texts/s), and the ceiling is what it can do."""
    from services.models import registry
    from services.models.encoder import Encoder

    folder = registry.current_dir(settings.models_path, "encoder")
    encoder = Encoder.load(folder)
    sample = list(texts)
    encoder.embed(sample[:batch_size], batch_size=batch_size)  # warm-up: first-run allocations
    passes = []
    for _ in range(max(1, rounds)):
        started = time.perf_counter()
        encoder.embed(sample, batch_size=batch_size)
        passes.append(time.perf_counter() - started)
    seconds = min(passes)
    return {
        "texts": len(sample),
        "batch_size": batch_size,
        "seconds": round(seconds, 3),
        "texts_per_s": round(len(sample) / seconds, 1),
        "rounds_texts_per_s": [round(len(sample) / p, 1) for p in passes],
        "encoder_version": folder.name,
    }


async def _drain(settings: Settings, timeout: float, say: Callable[[str], None]) -> dict[str, int]:
    """Wait until no stage has unconsumed input (after an overloaded step)."""
    from kefu import localstack
    from kefu.stack import SOURCES

    deadline = time.monotonic() + timeout
    lag: dict[str, int] = {}
    while True:
        lag = {}
        for service, topics in SOURCES.items():
            per_topic = await asyncio.to_thread(
                localstack.consumer_lag, settings.kafka_bootstrap, f"kefu-{service}", topics,
                **_security_options(settings),
            )  # fmt: skip
            lag[service] = sum(per_topic.values())
        if sum(lag.values()) == 0 or time.monotonic() > deadline:
            return lag
        say(f"  draining: lag {lag}")
        await asyncio.sleep(2.0)


def _security_options(settings: Settings) -> dict[str, Any]:
    from services.runtime.bus import aiokafka_security_kwargs

    kw = aiokafka_security_kwargs(settings)
    return {} if kw.get("security_protocol") == "PLAINTEXT" else kw


async def run_step(
    settings: Settings,
    dialogues: Sequence[Any],
    order_ids: Mapping[str, Sequence[str]],
    rate: float,
    options: PipelineOptions,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """One fixed-rate run: send for ``duration`` s, analyse, with CPU/RSS of every process."""
    count = max(1, round(rate * options.duration))
    plan = plan_messages(
        dialogues, count, run_id=uuid.uuid4().hex[:8], active=options.active,
        order_ids=order_ids, seed=options.seed,
    )  # fmt: skip
    say(f"rate {rate:.1f}/s for {options.duration:.0f} s: {count} messages")
    pids = stack_pids(settings)
    with ResourceSampler({**pids, "bench_client": os.getpid()}) as sampler:
        async with TrafficDriver(settings) as driver:
            result = await driver.run(plan, rate, options.reply_timeout)
    summary = analyse(result.sent, result.received, options.reply_timeout)
    e2e = summary["e2e_ms"]
    summary.update(
        rate=round(rate, 2),
        duration_s=options.duration,
        achieved_msg_per_s=round(summary["answered"] / max(result.send_window_s, 1e-6), 1),
        sender_lag_ms=percentiles(result.sender_lag_ms),
        backlog_growing=backlog_growing(result.backlog, rate),
        backlog_end=result.backlog[-1][1] if result.backlog else 0,
        processes=sampler.report(),
        restarted=[n for n, pid in stack_pids(settings).items() if pids.get(n) != pid],
        budget_ms=options.budget_ms,
    )
    summary["within_budget"] = (
        e2e["p99"] is not None
        and e2e["p99"] <= options.budget_ms
        and summary["lost"] == 0
        and not summary["backlog_growing"]
    )
    say(
        f"  answered {summary['answered']}/{summary['sent']}, lost {summary['lost']}, "
        f"dup {summary['duplicated_replies']}, e2e p50 {e2e['p50']} p95 {e2e['p95']} "
        f"p99 {e2e['p99']} ms, backlog growing: {summary['backlog_growing']}"
    )
    return summary


async def warm_up(
    settings: Settings,
    dialogues: Sequence[Any],
    order_ids: Mapping[str, Sequence[str]],
    count: int,
    say: Callable[[str], None],
) -> float:
    """Send ``count`` messages slowly and wait for their answers (models' first batches, FAQ
    index, connection pools), so the measured runs see a warm stack like production does."""
    started = time.monotonic()
    plan = plan_messages(
        dialogues, count, run_id=f"warmup-{uuid.uuid4().hex[:6]}", order_ids=order_ids
    )
    async with TrafficDriver(settings) as driver:
        result = await driver.run(plan, rate=2.0, reply_timeout=180.0, settle=0.0)
    unanswered = driver.unanswered([m.message_id for m in result.sent])
    seconds = round(time.monotonic() - started, 1)
    say(f"warm-up: {count} messages in {seconds} s ({len(unanswered)} unanswered)")
    return seconds


async def _run(
    settings: Settings, options: PipelineOptions, say: Callable[[str], None]
) -> dict[str, Any]:
    dialogues, source = load_dialogues(options.data_path)  # bad input fails before anything runs
    await check_kafka(settings)
    await asyncio.to_thread(check_stack_ready, settings, options.ports)
    order_ids = await asyncio.to_thread(customer_order_ids, settings)
    say(f"traffic: {source} ({len(dialogues)} dialogues), {len(order_ids)} customers")
    summary: dict[str, Any] = {"bench": "pipeline", "source": source, "machine": machine()}
    ceiling: dict[str, Any] | None = None
    if options.encoder_ceiling:
        sample = plan_messages(dialogues, 512, run_id="ceiling", order_ids=order_ids)
        ceiling = await asyncio.to_thread(encoder_ceiling, settings, [m.text for m in sample])
        say(f"encoder alone: {ceiling['texts_per_s']} texts/s (batch {ceiling['batch_size']})")
        summary["encoder_ceiling"] = ceiling
    if options.warmup:
        summary["warmup_s"] = await warm_up(settings, dialogues, order_ids, options.warmup, say)
    if not options.find_max:
        step = await run_step(settings, dialogues, order_ids, options.rate, options, say)
        summary.update(step)
        achieved = step["achieved_msg_per_s"]
    else:

        async def run_at(rate: float) -> dict[str, Any]:
            return await run_step(settings, dialogues, order_ids, rate, options, say)

        steps, best = await search_max_rate(
            run_at,
            lambda: _drain_or_fail(settings, say),
            start=options.rate,
            factor=options.step_factor,
            max_steps=options.max_steps,
            refine_steps=options.refine_steps,
        )
        summary["steps"] = [
            {
                k: s[k]
                for k in (
                    "rate",
                    "achieved_msg_per_s",
                    "lost",
                    "duplicated_replies",
                    "backlog_growing",
                    "within_budget",
                )
            }
            | {"e2e_p99_ms": s["e2e_ms"]["p99"], "e2e_p50_ms": s["e2e_ms"]["p50"]}
            for s in steps
        ]
        summary["budget_ms"] = options.budget_ms
        summary["max_rate"] = best["rate"] if best else None
        summary["max_achieved_msg_per_s"] = best["achieved_msg_per_s"] if best else None
        achieved = best["achieved_msg_per_s"] if best else 0.0
        if best is not None:
            await _drain_or_fail(settings, say)
            half_options = replace(options, duration=options.half_max_duration)
            half = await run_step(
                settings, dialogues, order_ids, best["rate"] / 2, half_options, say
            )
            summary["at_half_max"] = half
        else:
            summary["at_half_max"] = None
    if ceiling:
        summary["achieved_over_ceiling"] = round(achieved / ceiling["texts_per_s"], 3)
    return summary


async def search_max_rate(
    run_at: Callable[[float], Awaitable[dict[str, Any]]],
    drain: Callable[[], Awaitable[None]],
    *,
    start: float,
    factor: float,
    max_steps: int,
    refine_steps: int,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every step run and the best one within budget (``within_budget``), or None.

    Rates go up by ``factor`` until a step is over budget; then ``refine_steps`` geometric
    bisections between the last good rate and the failed one (the ladder alone under-reports
    by up to 1/factor), each after the backlog of the overload step has drained.
    """
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    failed: dict[str, Any] | None = None
    rate = start
    for _ in range(max_steps):
        step = await run_at(rate)
        steps.append(step)
        if not step["within_budget"]:
            failed = step
            break
        best = step
        rate *= factor
    for _ in range(refine_steps):
        if best is None or failed is None:
            break
        rate = math.sqrt(best["rate"] * failed["rate"])
        if rate < best["rate"] * 1.05:  # close enough: the steps' own noise is larger
            break
        await drain()
        step = await run_at(rate)
        steps.append(step)
        if step["within_budget"]:
            best = step
        else:
            failed = step
    return steps, best


async def _drain_or_fail(settings: Settings, say: Callable[[str], None]) -> None:
    """Wait for the backlog of an overload step to clear before measuring again."""
    lag = await _drain(settings, 180.0, say)
    if sum(lag.values()):
        raise BenchError(f"the stack did not drain after the overload step: lag {lag}")


def run_pipeline_bench(
    settings: Settings, options: PipelineOptions, say: Callable[[str], None] = print
) -> dict[str, Any]:
    return asyncio.run(_run(settings, options, say))
