"""Benchmark: what Faust costs over raw aiokafka for a stage that only forwards.

The same N envelopes are written once to a private input topic. Then two consumers read all of
them, one after the other, each in its own process, with the same work per message (decode the
envelope, append a latency, encode, produce, commit after the broker has the output):

* ``raw``: aiokafka consumer + producer in a plain loop (``python -m bench.bus raw ...``);
* ``faust``: the project's forwarder stage, ``services.runtime.forward.build_forwarder`` run by
  ``services.runtime.bus.run_worker`` exactly like a service (``python -m bench.bus faust ...``).

Throughput is measured on the output topic from the broker timestamps of the first and the last
forwarded record, so process start-up and the consumer-group join are not counted; CPU per
message is the worker process's CPU time over that same window. Private topics are created and
deleted by the benchmark. The LAST line printed is one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from bench.traffic import builtin_dialogues
from services.runtime.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_COST_RATIO = 2.0  # Faust may cost at most twice raw aiokafka
STACK_HINT = "run `kefu stack up` (or point KEFU_KAFKA_BOOTSTRAP at a running broker)"


class BenchError(RuntimeError):
    """The benchmark cannot run; the message says what to do."""


@dataclass
class WorkerResult:
    name: str
    messages: int
    window_s: float
    msg_per_s: float
    cpu_s: float
    cpu_ms_per_msg: float
    duplicates: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "window_s": round(self.window_s, 3),
            "msg_per_s": round(self.msg_per_s, 1),
            "cpu_s": round(self.cpu_s, 3),
            "cpu_ms_per_msg": round(self.cpu_ms_per_msg, 4),
            "duplicates": self.duplicates,
        }


# --------------------------------------------------------------------------- pure helpers


def bench_envelopes(count: int, run_id: str) -> list[bytes]:
    """``count`` envelopes as ingest writes them (text, language, ids, one latency entry)."""
    from kefu.v1.events_pb2 import Envelope
    from services.runtime.envelope import encode, now_ts

    texts = [(d.language, t) for d in builtin_dialogues() for t in d.turns]
    out = []
    for i in range(count):
        language, text = texts[i % len(texts)]
        env = Envelope(
            schema_version=1,
            event_id=uuid.uuid4().hex,
            message_id=f"{run_id}-{i}",
            conversation_id=f"bench-{run_id}-{i % 97}",
            user_id="u2001" if language == "en" else "u1001",
            channel="bench",
            text=text,
            masked_text=text,
            language=language,
        )
        env.sent_at.CopyFrom(now_ts())
        env.received_at.CopyFrom(now_ts())
        lat = env.latencies.add(stage="ingest", ms=0.5)
        lat.at.CopyFrom(now_ts())
        out.append(encode(env))
    return out


def window_rate(timestamps_ms: list[int]) -> tuple[float, float]:
    """(seconds between first and last record, records per second over that window)."""
    if len(timestamps_ms) < 2:
        raise BenchError("fewer than 2 records arrived: nothing to time")
    span = (max(timestamps_ms) - min(timestamps_ms)) / 1000.0
    span = max(span, 0.001)  # timestamps are in ms: never divide by zero
    return span, (len(timestamps_ms) - 1) / span


def best(results: Sequence[WorkerResult]) -> WorkerResult:
    """The round with the least CPU per message (noise on a shared machine only adds)."""
    if not results:
        raise BenchError("no benchmark round finished")
    return min(results, key=lambda r: r.cpu_ms_per_msg)


def summarise(
    raw_rounds: Sequence[WorkerResult], faust_rounds: Sequence[WorkerResult], partitions: int
) -> dict[str, Any]:
    raw, faust = best(raw_rounds), best(faust_rounds)
    raw_rate = max(r.msg_per_s for r in raw_rounds)
    faust_rate = max(r.msg_per_s for r in faust_rounds)
    cost_ratio = faust.cpu_ms_per_msg / raw.cpu_ms_per_msg if raw.cpu_ms_per_msg else None
    throughput_ratio = raw_rate / faust_rate if faust_rate else None
    worst = max(r for r in (cost_ratio, throughput_ratio) if r is not None)
    return {
        "bench": "bus",
        "messages": raw.messages,
        "partitions": partitions,
        "rounds": len(raw_rounds),
        "raw_aiokafka": {**raw.as_dict(), "best_msg_per_s": round(raw_rate, 1),
                         "rounds_cpu_ms_per_msg": [round(r.cpu_ms_per_msg, 4) for r in raw_rounds]},
        "faust": {**faust.as_dict(), "best_msg_per_s": round(faust_rate, 1),
                  "rounds_cpu_ms_per_msg": [round(r.cpu_ms_per_msg, 4) for r in faust_rounds]},
        # > 1 means Faust is slower / costs more
        "throughput_ratio_raw_over_faust": round(throughput_ratio, 3) if throughput_ratio else None,
        "cpu_ratio_faust_over_raw": round(cost_ratio, 3) if cost_ratio else None,
        # what Faust adds per message over the same work done with plain aiokafka
        "faust_overhead_cpu_ms_per_msg": round(faust.cpu_ms_per_msg - raw.cpu_ms_per_msg, 4),
        "target_ratio": TARGET_COST_RATIO,
        "within_target": worst <= TARGET_COST_RATIO,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


# --------------------------------------------------------------------------- Kafka helpers


def client_kwargs(settings: Settings) -> dict[str, Any]:
    from services.runtime.bus import aiokafka_security_kwargs

    return {"bootstrap_servers": settings.kafka_bootstrap, **aiokafka_security_kwargs(settings)}


class _ErrorLog(logging.Handler):
    """Collects aiokafka's error log lines: the cause of a failed bootstrap is only logged."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def check_kafka(settings: Settings, timeout: float = 10.0) -> None:
    """Fail with what to do when the broker is not there (before any topic is created)."""
    from aiokafka.admin import AIOKafkaAdminClient

    first = settings.kafka_bootstrap.split(",")[0]
    host, _, port = first.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2.0).close()
    except OSError as exc:
        raise BenchError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}): {STACK_HINT}"
        ) from None
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=int(timeout * 1000))
    errors = _ErrorLog()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(errors)
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.describe_cluster(), timeout)
    except Exception as exc:
        rejected = [line for line in errors.lines if "Authentication" in line]
        if rejected:
            raise BenchError(
                f"Kafka at {settings.kafka_bootstrap} rejected the SASL login ({rejected[-1]}): "
                "check KEFU_KAFKA_SASL_USERNAME, KEFU_KAFKA_SASL_PASSWORD and "
                "KEFU_KAFKA_SASL_MECHANISM"
            ) from None
        raise BenchError(
            f"Kafka at {settings.kafka_bootstrap} does not answer ({type(exc).__name__}: {exc}): "
            f"{STACK_HINT}"
        ) from None
    finally:
        aiokafka_log.removeHandler(errors)
        await admin.close()


async def create_private_topics(settings: Settings, names: list[str], partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
        errors = [f"{t}: error {code}" for t, code, *_ in response.topic_errors if code != 0]
        if errors:
            raise BenchError(f"cannot create the benchmark's topics: {'; '.join(errors)}")
        # a consumer started before every partition has a leader logs NotLeaderForPartition
        deadline = time.monotonic() + 30
        while True:
            described = await admin.describe_topics(names)
            if all(
                t.get("error_code", 0) == 0
                and all(p.get("leader", -1) >= 0 for p in t["partitions"])
                for t in described
            ):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"the benchmark's topics have no leader after 30 s: {names}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def delete_topics_with_prefix(settings: Settings, prefix: str) -> list[str]:
    """Delete the run's topics (ours and the ones Faust made for its app id)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()


async def produce_all(settings: Settings, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for i, value in enumerate(values):
            futures.append(await producer.send(topic, value, key=f"k{i % 97}".encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- the two workers


async def raw_forward_loop(settings: Settings, source: str, sink: str, group: str) -> None:
    """What a stage does without Faust: consume, transform, produce, commit after the acks."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from services.runtime.envelope import EnvelopeError, add_latency, decode, encode

    consumer = AIOKafkaConsumer(
        source,
        **client_kwargs(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all", linger_ms=1)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            futures = []
            for records in batches.values():
                for record in records:
                    started = time.perf_counter()
                    try:
                        env = decode(record.value)
                    except EnvelopeError:
                        continue  # the benchmark writes only valid envelopes
                    add_latency(env, "raw", started)
                    futures.append(await producer.send(sink, encode(env), key=record.key))
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def run_faust_worker(settings: Settings, service: str, source: str, sink: str) -> None:
    from services.runtime.bus import run_worker
    from services.runtime.forward import build_forwarder

    run_worker(build_forwarder(service, settings, source, sink, note="bench bus"))


# --------------------------------------------------------------------------- orchestration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_for(settings: Settings, state_dir: Path) -> dict[str, str]:
    from kefu.stack import settings_env

    env = {**os.environ, **settings_env(replace(settings, state_dir=str(state_dir)))}
    env["KEFU_WEB_PORT"] = str(_free_port())
    env["KEFU_LOG_LEVEL"] = "WARNING"
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


async def measure_worker(
    settings: Settings,
    name: str,
    argv: list[str],
    env: dict[str, str],
    sink: str,
    expected: int,
    timeout: float,
    log_path: Path,
    say: Callable[[str], None],
) -> WorkerResult:
    """Start a worker process, read its output topic until all ``expected`` records arrived."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        sink, **client_kwargs(settings), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    ps = psutil.Process(proc.pid)
    seen: set[str] = set()
    duplicates = 0
    stamps: list[int] = []
    cpu_first: float | None = None
    cpu_last = 0.0
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < expected:
            if proc.poll() is not None:
                raise BenchError(
                    f"the {name} worker exited with code {proc.returncode}; see {log_path}"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the {name} worker forwarded {len(seen)} of {expected} messages in "
                    f"{timeout:.0f} s; see {log_path}"
                )
            batches = await consumer.getmany(timeout_ms=50, max_records=5000)
            got = [r for records in batches.values() for r in records]
            if not got:
                continue
            cpu_now = _cpu_seconds(ps)
            if cpu_first is None:
                cpu_first = cpu_now
            cpu_last = cpu_now
            for record in got:
                message_id = json.loads(record.value)["messageId"]
                if message_id in seen:
                    duplicates += 1
                    continue
                seen.add(message_id)
                stamps.append(record.timestamp)
    finally:
        _stop_process(proc)
        await consumer.stop()
    window, rate = window_rate(stamps)
    cpu = max(0.0, cpu_last - (cpu_first or 0.0))
    result = WorkerResult(
        name, len(seen), window, rate, cpu, cpu * 1000.0 / max(1, len(seen) - 1), duplicates
    )
    say(
        f"{name:6s} {result.msg_per_s:8.0f} msg/s  {result.cpu_ms_per_msg:.3f} CPU ms/msg  "
        f"({result.messages} messages in {result.window_s:.2f} s)"
    )
    return result


def _cpu_seconds(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(t.user + t.system)


async def run_bus_bench(
    settings: Settings,
    messages: int = 10000,
    partitions: int = 3,
    timeout: float | None = None,
    repeat: int = 3,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Both workers over the same messages, ``repeat`` rounds alternating which goes first;
    the summary compares the best round of each (a shared machine only ever adds noise)."""
    if messages < 100:
        raise BenchError("--messages must be at least 100 for a meaningful rate")
    if repeat < 1:
        raise BenchError("--repeat must be at least 1")
    await check_kafka(settings)
    run_id = uuid.uuid4().hex[:8]
    prefix = f"kefu-bench-{run_id}"
    source = f"{prefix}.in"
    timeout = timeout or 60.0 + messages / 50.0
    state = Path(tempfile.mkdtemp(prefix="kefu-bench-bus-"))
    env = _env_for(settings, state)
    python = sys.executable
    results: dict[str, list[WorkerResult]] = {"raw": [], "faust": []}
    try:
        await create_private_topics(settings, [source], partitions)
        say(f"writing {messages} envelopes to {source} ({partitions} partitions)")
        await produce_all(settings, source, bench_envelopes(messages, run_id))
        for round_no in range(repeat):
            order = ["raw", "faust"] if round_no % 2 == 0 else ["faust", "raw"]
            for name in order:
                sink = f"{prefix}.{name}-out-{round_no}"
                await create_private_topics(settings, [sink], partitions)
                # a fresh consumer group per round: each reads all messages from the start
                group = (
                    f"{prefix}-raw-{round_no}" if name == "raw" else f"bench-{run_id}-{round_no}"
                )
                argv = [python, "-m", "bench.bus", name, source, sink, group]
                results[name].append(
                    await measure_worker(
                        settings,
                        name,
                        argv,
                        env,
                        sink,
                        messages,
                        timeout,
                        state / f"{name}-{round_no}.log",
                        say,
                    )
                )
    finally:
        with contextlib.suppress(Exception):  # cleanup must not hide the real error
            await delete_topics_with_prefix(settings, prefix)
    shutil.rmtree(state, ignore_errors=True)
    return summarise(results["raw"], results["faust"], partitions)


def _worker_main(argv: list[str]) -> None:
    """``python -m bench.bus raw|faust SOURCE SINK GROUP_OR_SERVICE`` (started by the bench)."""
    from services.runtime.settings import load_settings

    if len(argv) != 4 or argv[0] not in ("raw", "faust"):
        raise SystemExit(
            "usage: python -m bench.bus raw|faust SOURCE SINK GROUP (use `kefu bench bus`)"
        )
    kind, source, sink, name = argv
    settings = load_settings()
    if kind == "raw":
        asyncio.run(raw_forward_loop(settings, source, sink, name))
    else:
        run_faust_worker(settings, name, source, sink)


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
