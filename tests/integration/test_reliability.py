"""Faults under a small steady load: no message lost, no reply duplicated, no crash.

Every test runs bilingual traffic (bench.traffic) through the session's stack at a few messages
per second while it breaks something: kill -9 of a stage (then started again exactly as the stack
starts it), the broker stopped and started, FerretDB restarted, OrderService down, and >= 1000
poison inputs. Afterwards every message must have exactly one reply (or a reason in the DLQ),
and every process not deliberately killed must still be the same pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from bench.pipeline import TrafficDriver, analyse
from bench.traffic import PlannedMessage, builtin_dialogues, plan_messages
from kefu import localstack
from kefu import stack as stacklib
from tests.integration.conftest import StackHandle

RATE = 6.0  # messages per second: a steady trickle, as fast as the 2-core CI machine allows
REPLY_TIMEOUT = 150.0  # a stage restarting on a loaded machine (model load) takes a while
STAGES = ("ingest", "nlu", "sentiment", "recommend", "reply")
RUN_ID = uuid.uuid4().hex[:6]


def supervisor(stack: StackHandle) -> localstack.Supervisor:
    return localstack.Supervisor(stack.paths)


def all_pids(stack: StackHandle) -> dict[str, int | None]:
    sup = supervisor(stack)
    return {
        name: sup.pid(name) for name in (localstack.KAFKA, localstack.FERRETDB, *stacklib.SERVICES)
    }


def restart_missing(stack: StackHandle, services: tuple[str, ...] = stacklib.SERVICES) -> None:
    """Start what is not running with the very command and environment the stack uses."""
    stacklib.up(stack.settings, stack.ports, services=services, timeout=300, say=lambda _: None)


def kill_9(stack: StackHandle, name: str) -> int:
    sup = supervisor(stack)
    pid = sup.pid(name)
    assert pid is not None, f"{name} is not running before the test"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while sup.is_running(name):
        assert time.monotonic() < deadline, f"{name} (pid {pid}) survived SIGKILL"
        time.sleep(0.05)
    return pid


@pytest.fixture
def healthy_stack(stack: StackHandle) -> Iterator[StackHandle]:
    """The stack, with anything a previous test left stopped started again (before and after)."""
    restart_missing(stack)
    yield stack
    restart_missing(stack)


def traffic(count: int, tag: str) -> list[PlannedMessage]:
    return plan_messages(builtin_dialogues(), count, run_id=f"{RUN_ID}-{tag}", active=12)


async def traffic_during(
    stack: StackHandle,
    fault: Callable[[], Awaitable[None]],
    *,
    lead_in: float = 2.0,
    tail: float = 3.0,
    max_messages: int = 2000,
) -> dict[str, Any]:
    """Send at RATE; ``lead_in`` s in, run ``fault`` (which also repairs); keep sending ``tail``
    s after it returns, then wait for every answer. Returns analyse()'s summary."""
    stop = asyncio.Event()
    async with TrafficDriver(stack.settings) as driver:
        sending = asyncio.create_task(
            driver.run(traffic(max_messages, "f"), RATE, REPLY_TIMEOUT, settle=4.0, stop=stop)
        )
        try:
            await asyncio.sleep(lead_in)
            await fault()
            await asyncio.sleep(tail)
        finally:
            stop.set()
        result = await sending
    summary = analyse(result.sent, result.received, REPLY_TIMEOUT)
    assert summary["sent"] >= RATE * (lead_in + tail) * 0.8, "the load did not run"
    return summary


def assert_exactly_once(summary: dict[str, Any]) -> None:
    assert summary["lost"] == 0, (
        f"lost {summary['lost']} of {summary['sent']}: {summary['lost_ids']}"
    )
    assert summary["late"] == 0, f"{summary['late']} answered only after {REPLY_TIMEOUT} s"
    assert summary["duplicated_replies"] == 0, f"duplicated replies: {summary['duplicated_ids']}"
    assert summary["dlq"] == 0, f"valid messages dead-lettered: {summary['dlq_details']}"
    assert summary["answered"] == summary["sent"]


# -- kill -9 of each stage ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("service", STAGES)
def test_kill_9_a_stage_loses_and_duplicates_nothing(
    healthy_stack: StackHandle, service: str
) -> None:
    stack = healthy_stack
    before = all_pids(stack)

    async def kill_and_restart() -> None:
        await asyncio.to_thread(kill_9, stack, service)
        await asyncio.sleep(1.0)  # messages pile up for the dead stage meanwhile
        await asyncio.to_thread(restart_missing, stack, (service,))

    summary = asyncio.run(traffic_during(stack, kill_and_restart))
    assert_exactly_once(summary)
    after = all_pids(stack)
    assert after[service] not in (None, before[service]), "the stage was not restarted"
    untouched = {n: p for n, p in before.items() if n != service}
    assert {n: after[n] for n in untouched} == untouched, "another process died meanwhile"


# -- the broker and the database going away --------------------------------------------------------


@pytest.mark.slow
def test_broker_stop_and_start_services_recover_by_themselves(healthy_stack: StackHandle) -> None:
    stack = healthy_stack
    before = all_pids(stack)

    async def bounce_kafka() -> None:
        await asyncio.to_thread(supervisor(stack).stop, localstack.KAFKA, 60.0)
        await asyncio.sleep(3.0)
        # only Kafka is started again: the services must reconnect on their own
        await asyncio.to_thread(restart_missing, stack, ())

    summary = asyncio.run(traffic_during(stack, bounce_kafka, tail=5.0))
    assert_exactly_once(summary)
    after = all_pids(stack)
    services = {s: before[s] for s in stacklib.SERVICES}
    assert {s: after[s] for s in services} == services, "a service died with the broker"
    assert after[localstack.KAFKA] not in (None, before[localstack.KAFKA])


@pytest.mark.slow
def test_ferretdb_restart_loses_nothing(healthy_stack: StackHandle) -> None:
    stack = healthy_stack
    before = all_pids(stack)

    async def bounce_ferretdb() -> None:
        await asyncio.to_thread(supervisor(stack).stop, localstack.FERRETDB, 30.0)
        await asyncio.sleep(3.0)
        await asyncio.to_thread(restart_missing, stack, ())

    summary = asyncio.run(traffic_during(stack, bounce_ferretdb))
    assert_exactly_once(summary)
    after = all_pids(stack)
    services = {s: before[s] for s in stacklib.SERVICES}
    assert {s: after[s] for s in services} == services, "a service died with the database"


# -- OrderService down -----------------------------------------------------------------------------


def order_question(conversation: str, user: str, text: str) -> PlannedMessage:
    return PlannedMessage(conversation, user, "en", text, 0, "orders-down")


async def ask(driver: TrafficDriver, msg: PlannedMessage, timeout: float) -> dict[str, Any] | None:
    """Send one message; the first answer within ``timeout`` s, or None."""
    result = await driver.run([msg], rate=10.0, reply_timeout=timeout, settle=0.5)
    return driver.first_answer(result.sent[0].message_id)


@pytest.mark.slow
def test_order_service_down_gives_graceful_answers_and_no_stuck_stage(
    healthy_stack: StackHandle,
) -> None:
    stack = healthy_stack
    before = all_pids(stack)
    order_id = "5520481139"  # u2001's shipped demo order (services/orders/seed.py)

    async def run() -> None:
        async with TrafficDriver(stack.settings) as driver:
            await asyncio.to_thread(supervisor(stack).stop, "orders", 30.0)
            conversation = f"c-ordersdown-{RUN_ID}"
            started = time.monotonic()
            reply = await ask(
                driver, order_question(conversation, "u2001", f"Where is my order {order_id}?"), 60
            )
            assert reply is not None, "no answer at all while OrderService is down"
            section = reply.get("reply", {})
            assert section.get("action") in ("order", "handoff"), section
            if section["action"] == "order":
                assert section.get("orderCall", {}).get("code") not in (None, "", "OK"), section
            else:
                assert section.get("handoffReason") == "order_service_down", section
            assert time.monotonic() - started < 30, "the order call was not bounded by a deadline"
            # the stage is not stuck: another conversation is answered promptly meanwhile
            t0 = time.monotonic()
            hello = await ask(driver, order_question(f"c-hello-{RUN_ID}", "u2002", "hello"), 30)
            assert hello is not None and time.monotonic() - t0 < 30
            await asyncio.to_thread(restart_missing, stack, ("orders",))
            # once it is back (the client's circuit breaker may wait before a trial call) the
            # same question is answered from OrderService again
            deadline = time.monotonic() + 90
            while True:
                again = await ask(
                    driver,
                    order_question(
                        f"c-ordersback-{uuid.uuid4().hex[:6]}",
                        "u2001",
                        f"Where is my order {order_id}?",
                    ),
                    60,
                )
                code = (again or {}).get("reply", {}).get("orderCall", {}).get("code")
                if code == "OK":
                    break
                assert time.monotonic() < deadline, (
                    f"OrderService back but replies still say {code}"
                )
                await asyncio.sleep(5)

    asyncio.run(run())
    after = all_pids(stack)
    stages = {s: before[s] for s in STAGES}
    assert {s: after[s] for s in stages} == stages, "a stage crashed while OrderService was down"


# -- poison inputs ---------------------------------------------------------------------------------


def poison_inputs(n_min: int = 1000) -> list[tuple[bytes | None, bytes | None, str | None]]:
    """(value, key, message id or None) of >= n_min hostile inbound records, deterministic."""
    good = {
        "messageId": "m", "conversationId": "c-poison", "userId": "u1001",
        "channel": "test", "text": "where is my order", "sentAt": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    out: list[tuple[bytes | None, bytes | None, str | None]] = []

    def add(obj: Any, key: bytes | None = b"c-poison", raw: bytes | None = None) -> None:
        mid = None
        if isinstance(obj, dict) and isinstance(obj.get("messageId"), str):
            mid = obj["messageId"] = f"{obj['messageId']}-{RUN_ID}-{len(out)}"
        value = raw if raw is not None else json.dumps(obj, ensure_ascii=False).encode()
        out.append((value, key, mid))

    injections = [
        {"$ne": None}, {"$gt": ""}, {"$where": "sleep(1000)"}, {"$regex": ".*"}, ["u1001"],
        "'; DROP TABLE orders; --", "u1001' || '1'=='1", "../../etc/passwd", "u1001\u0000",
        "$ne", "u1001\n", "", " ", "a" * 200, "{{7*7}}", "${jndi:ldap://x/a}",
    ]  # fmt: skip
    texts = [
        '{"$ne": null}', "'; DROP TABLE users; --", "a\u0000b\u0000c", "\u0000" * 50,
        "<script>alert(1)</script>", "订单号 7730192846' OR '1'='1", "{{7*7}} ${7*7}",
        "\ud7ff\ue000\uffff", "🙂" * 500, "x" * 50000, "\u202eevil", "\t\r\n" * 100,
    ]  # fmt: skip
    rounds = 0
    while len(out) < n_min:
        rounds += 1
        # malformed JSON: every truncation of a valid payload
        body = json.dumps({**good, "messageId": f"trunc-{rounds}"}).encode()
        for cut in range(1, len(body) - 1, 7):
            add(None, raw=body[:cut])
        add(None, raw=b"\xff\xfe\xfd" + body)  # invalid UTF-8
        add(None, raw=body.replace(b"where", b"wh\xc3\x28re"))  # invalid UTF-8 inside text
        add(None, raw=b"")
        add(None, raw=b"null")
        add(None, raw=b"[1,2,3]")
        add(None, raw=b'{"a": NaN}')
        add(None, raw=b"1e999999")
        add(None, raw=b"{" * 100_000)  # deeply nested, unterminated
        add(None, raw=(b'{"a":' * 5000) + b"1" + (b"}" * 5000))  # deeply nested, valid
        add(None, raw=b"[" * 20_000 + b"]" * 20_000)
        add({**good, "messageId": "huge", "text": "x" * 300_000})  # over the payload limit
        add(
            {**good, "messageId": "nul"},
            raw=json.dumps({**good, "messageId": f"nul-{RUN_ID}-{len(out)}"}).encode() + b"\x00",
        )
        add({**good, "messageId": "nokey"}, key=None)
        add({**good, "messageId": "badkey"}, key=b"\xff\xfe")
        # wrong types in every field
        for field in (
            "messageId",
            "conversationId",
            "userId",
            "text",
            "channel",
            "sentAt",
            "metadata",
            "language",
        ):
            wrong_values: list[Any] = [5, None, [], {}, True, 1.5, {"$ne": None}]
            for wrong in wrong_values:
                add(
                    {**good, "messageId": f"type-{field}", field: wrong}
                    if field != "messageId"
                    else {**good, field: wrong}
                )
        # operator / SQL / template injection in identifier fields
        for field in ("userId", "conversationId", "messageId"):
            for bad in injections:
                obj = {**good, field: bad} if field != "messageId" else {**good}
                if field == "messageId":
                    out.append(
                        (
                            json.dumps({**good, "messageId": bad}, ensure_ascii=False).encode(),
                            b"c-poison",
                            None,
                        )
                    )
                else:
                    obj["messageId"] = f"inj-{field}"
                    add(obj)
        # hostile but valid text: must be processed (answered), never break a stage
        for text in texts:
            add(
                {
                    **good,
                    "messageId": "text",
                    "conversationId": f"c-poison-{RUN_ID}-{len(out) % 7}",
                    "text": text,
                }
            )
        add({**good, "messageId": "future", "schemaVersion": 99})
    return out


@pytest.mark.slow
def test_a_thousand_poison_inputs_are_processed_or_dead_lettered_and_nothing_crashes(
    healthy_stack: StackHandle,
) -> None:
    stack = healthy_stack
    before = all_pids(stack)
    poison = poison_inputs(1000)
    assert len(poison) >= 1000

    async def run() -> None:
        async with TrafficDriver(stack.settings) as driver:
            ids = [mid for _, _, mid in poison if mid]
            driver.expect(ids)
            placed: list[tuple[int, int]] = []
            for start in range(0, len(poison), 100):  # in chunks: the producer buffer is finite
                chunk = poison[start : start + 100]
                placed += await driver.send_raw([(v, k) for v, k, _ in chunk])

            def unaccounted() -> list[int]:
                return [
                    i
                    for i, ((_, _, mid), where) in enumerate(zip(poison, placed, strict=True))
                    if driver.dead_letter_for(*where) is None
                    and not (mid and (mid in driver.dead_lettered or not driver.unanswered([mid])))
                ]

            deadline = time.monotonic() + 240
            while unaccounted() and time.monotonic() < deadline:
                await driver.poll(200)
            missing = unaccounted()
            assert not missing, (
                f"{len(missing)} of {len(poison)} poison inputs neither answered nor dead-lettered, "
                f"e.g. {[(poison[i][0] or b'')[:120] for i in missing[:5]]}"
            )
            reasons = [d.get("reason") for d in driver.dlq_by_source.values()]
            assert all(reasons), "a dead letter without a reason"

    asyncio.run(run())
    assert all_pids(stack) == before, "a process crashed or restarted on poison input"


# -- a new model version under load ---------------------------------------------------------------


@pytest.mark.slow
def test_a_published_intent_version_is_swapped_in_under_load_exactly_once(
    healthy_stack: StackHandle,
) -> None:
    """Publishing a new intent version while messages flow: nlu switches to it without a
    restart (same pid), replies before carry the old version and after the new one, and no
    message is lost or answered twice. The new version is a copy of the current one, so the
    shared models root serves the same predictions; the old CURRENT is restored afterwards."""
    import shutil
    import urllib.request

    from services.models import registry

    root = healthy_stack.settings.models_path
    old = registry.current_version(root, "intent")
    assert old is not None
    new_dir = registry.new_version_dir(root, "intent")
    shutil.copytree(root / "intent" / old, new_dir, dirs_exist_ok=True)
    (new_dir / "manifest.json").unlink()
    manifest = registry.read_manifest(root / "intent" / old)
    manifest.pop("version", None)
    registry.write_manifest(new_dir, manifest)
    nlu_pid = supervisor(healthy_stack).pid("nlu")
    readyz = f"http://127.0.0.1:{healthy_stack.ports.web['nlu']}/readyz"

    def nlu_says() -> str:
        with urllib.request.urlopen(readyz, timeout=5) as resp:
            return resp.read().decode()

    async def run() -> Any:
        stop = asyncio.Event()
        async with TrafficDriver(healthy_stack.settings) as driver:
            sending = asyncio.create_task(
                driver.run(traffic(2000, "swap"), RATE, REPLY_TIMEOUT, settle=4.0, stop=stop)
            )
            try:
                await asyncio.sleep(3.0)
                registry.publish(root, "intent", new_dir.name)
                deadline = time.monotonic() + 60
                while new_dir.name not in await asyncio.to_thread(nlu_says):
                    assert time.monotonic() < deadline, f"nlu still says {nlu_says()}"
                    await asyncio.sleep(0.5)
                await asyncio.sleep(4.0)
            finally:
                stop.set()
            return await sending

    try:
        result = asyncio.run(run())
    finally:
        registry.publish(root, "intent", old)
        shutil.rmtree(new_dir, ignore_errors=True)
    summary = analyse(result.sent, result.received, REPLY_TIMEOUT)
    assert_exactly_once(summary)
    versions = [r.value["nlu"]["modelVersion"] for r in result.received if r.value.get("nlu")]
    assert old in versions and new_dir.name in versions, sorted(set(versions))
    assert versions[-1] == new_dir.name  # the last seconds of traffic all ran on it
    assert supervisor(healthy_stack).pid("nlu") == nlu_pid, "nlu was restarted"
