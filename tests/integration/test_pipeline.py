"""A message flows inbound → every stage → outbound through the real broker and database."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Platform, StackHandle, inbound

STAGES = ["ingest", "nlu", "sentiment", "recommend", "reply"]
ACTIONS = {"answer", "faq", "ask", "order", "clarify", "handoff", "forward"}
OUT = ("kefu.outbound.v1", "kefu.handoff.v1", "kefu.dlq.v1")


def replies_to(received: list[tuple[str, dict[str, Any]]], message_id: str) -> list[dict[str, Any]]:
    return [e for t, e in received if t == "kefu.outbound.v1" and e.get("messageId") == message_id]


async def _one_reply(
    stack: StackHandle, text: str = "Where is my order? It has been a week."
) -> None:
    async with Platform(stack.bootstrap, OUT) as platform:
        msg = inbound(f"c-{uuid.uuid4().hex[:8]}", "u2001", text)
        await platform.send(msg, key=msg["conversationId"])
        await platform.collect(60, until=lambda r: replies_to(r, msg["messageId"]))
        await platform.collect(3)  # anything extra would arrive now
        replies = replies_to(platform.received, msg["messageId"])
    assert len(replies) == 1, f"expected exactly one reply, got {len(replies)}"
    reply = replies[0]
    assert [lat["stage"] for lat in reply["latencies"]] == STAGES
    assert all(lat["ms"] >= 0 for lat in reply["latencies"])
    assert reply["language"] == "en"
    assert reply["nlu"]["intent"] and reply["nlu"]["modelVersion"]
    assert len(reply["nlu"]["ranking"]) == 3
    assert reply["sentiment"]["label"] in {"negative", "neutral", "positive"}
    assert "recommend" in reply  # attached or the reason it was skipped
    assert reply["reply"]["action"] in ACTIONS and reply["reply"]["text"]
    assert "embedding" not in reply["nlu"]  # served sentiment and the FAQ search, not sent out
    assert "states" not in reply["nlu"]  # served sentiment's tuned layers only


def test_one_message_in_exactly_one_reply_out(stack: StackHandle) -> None:
    asyncio.run(_one_reply(stack))


BAD_INPUTS: list[tuple[bytes, str]] = [
    (b"{not json", "malformed_json"),
    (b"\xff\xfe\xfd", "invalid_utf8"),
    (b'"just a string"', "not_an_object"),
    (json.dumps({"conversationId": "c-x", "userId": "u1", "text": "hi"}).encode(), "missing_field"),
    (json.dumps({"messageId": "m", "conversationId": "c-x", "userId": "u1", "text": 5}).encode(), "invalid_field"),
    (json.dumps({"messageId": "m", "conversationId": "c-x", "userId": {"$gt": ""}, "text": "x"}).encode(), "invalid_field"),
]  # fmt: skip


async def _dlq(stack: StackHandle) -> None:
    async with Platform(stack.bootstrap, OUT) as platform:
        for raw, _ in BAD_INPUTS:
            await platform.send(raw, key="c-bad")
        # a good message after the bad ones proves the stage kept going
        good = inbound("c-bad", "u2001", "hello")
        await platform.send(good, key="c-bad")
        await platform.collect(60, until=lambda r: replies_to(r, good["messageId"]))
        await platform.collect(2)
    dead = [e for t, e in platform.received if t == "kefu.dlq.v1" and e.get("stage") == "ingest"]
    assert sorted(d["reason"] for d in dead) == sorted(reason for _, reason in BAD_INPUTS)
    assert all(d["detail"] and d["sourceTopic"] == "kefu.inbound.v1" for d in dead)
    assert any(d.get("payloadBytes") for d in dead)  # invalid UTF-8 kept byte for byte
    assert replies_to(platform.received, good["messageId"])


def test_malformed_inputs_land_in_the_dlq_with_reasons(stack: StackHandle) -> None:
    asyncio.run(_dlq(stack))


async def _dupes(stack: StackHandle) -> None:
    async with Platform(stack.bootstrap, OUT) as platform:
        msg = inbound(f"c-{uuid.uuid4().hex[:8]}", "u1001", "你好，在吗")
        await platform.send(msg, key=msg["conversationId"])
        await platform.collect(60, until=lambda r: replies_to(r, msg["messageId"]))
        await platform.send(msg, key=msg["conversationId"])  # the platform re-sends after a timeout
        await platform.send(msg, key=msg["conversationId"])
        await platform.collect(8)
    assert len(replies_to(platform.received, msg["messageId"])) == 1


def test_duplicate_message_id_yields_no_second_reply(stack: StackHandle) -> None:
    asyncio.run(_dupes(stack))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "😀😀😀",
        "太慢了！" * 1200,
        "<script>alert(1)</script><b>where</b> is my order",
        "我的order到哪了 pls",
    ],
    ids=["empty", "emoji", "rant-4000", "html", "mixed"],
)
def test_no_text_breaks_a_stage(stack: StackHandle, text: str) -> None:
    async def run() -> None:
        async with Platform(stack.bootstrap, OUT) as platform:
            msg = inbound(f"c-{uuid.uuid4().hex[:8]}", "u2001", text)
            await platform.send(msg, key=msg["conversationId"])
            await platform.collect(60, until=lambda r: replies_to(r, msg["messageId"]))
            assert len(replies_to(platform.received, msg["messageId"])) == 1

    asyncio.run(run())


def test_the_example_platform_client_works(stack: StackHandle) -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "platform_client.py"
    spec = importlib.util.spec_from_file_location("platform_client", path)
    assert spec and spec.loader
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)

    async def run() -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        consumer = AIOKafkaConsumer(
            client.OUTBOUND,
            client.HANDOFF,
            bootstrap_servers=stack.bootstrap,
            group_id=None,
            auto_offset_reset="latest",
        )
        await producer.start()
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
            for tp in consumer.assignment():
                await consumer.position(tp)
            message = client.customer_message(
                "c-example", "u2001", "what payment methods do you accept?"
            )
            await client.publish(producer, message)
            replies = await client.replies_for(consumer, {message["messageId"]}, timeout=60)
            assert replies[message["messageId"]]["reply"]["action"] in ACTIONS
        finally:
            await consumer.stop()
            await producer.stop()

    asyncio.run(run())


def _counter(port: int, line_start: str) -> float:
    """The value of the metric line starting with ``line_start`` (0.0 when not exported)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        body = resp.read().decode()
    values = [float(ln.rsplit(" ", 1)[1]) for ln in body.splitlines() if ln.startswith(line_start)]
    return sum(values)


def test_sentiment_reuses_the_token_states_nlu_carries(stack: StackHandle) -> None:
    """One encoder pass per message: a short message reaches sentiment with nlu's token states
    (or embedding), so sentiment never runs the encoder for it."""
    port = stack.ports.web["sentiment"]
    rerun = 'kefu_messages_total{service="sentiment",outcome="encoder_rerun"}'
    before = _counter(port, rerun)
    asyncio.run(_one_reply(stack, "my parcel is late again, this is annoying"))
    assert _counter(port, rerun) == before


def test_every_service_serves_its_prometheus_metrics(stack: StackHandle) -> None:
    import urllib.request

    asyncio.run(_one_reply(stack))  # at least one message through every stage
    reply_port = stack.ports.web["reply"]
    carried_line = 'kefu_faq_query_vectors_total{source="carried"}'
    computed_line = 'kefu_faq_query_vectors_total{source="computed"}'
    carried, computed = _counter(reply_port, carried_line), _counter(reply_port, computed_line)
    asyncio.run(_one_reply(stack, "Which payment methods do you accept?"))  # an FAQ search
    # it reuses nlu's embedding instead of running the encoder again (a message with an order
    # id, which the FAQ query leaves out, is embedded again: earlier tests send some)
    assert _counter(reply_port, carried_line) > carried
    assert _counter(reply_port, computed_line) == computed
    for service, port in stack.ports.web.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert resp.status == 200, service
            assert resp.headers["Content-Type"].startswith("text/plain"), service
            body = resp.read().decode()
        assert "kefu_mongo_command_seconds" in body or service in ("nlu", "sentiment"), service
        if service in STAGES:
            processed = [
                line
                for line in body.splitlines()
                if line.startswith("kefu_messages_total{")
                and f'service="{service}"' in line
                and not line.endswith(" 0.0")
            ]
            assert processed, f"{service} exports no processed messages:\n{body[:2000]}"
        if service == "reply":
            assert 'kefu_faq_query_vectors_total{source="carried"}' in body, body[:2000]
