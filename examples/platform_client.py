"""A minimal chat-backend client for kefu: publish customer messages, read replies and handoffs.

Copy this into your platform's backend. It needs only `aiokafka`; messages are plain JSON
(proto3 JSON of kefu.v1.Envelope), so no generated code is required on your side.

    python examples/platform_client.py --bootstrap 127.0.0.1:19092 --user u2001 "where is my order?"
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

INBOUND = "kefu.inbound.v1"
OUTBOUND = "kefu.outbound.v1"
HANDOFF = "kefu.handoff.v1"


def customer_message(
    conversation_id: str, user_id: str, text: str, channel: str = "web"
) -> dict[str, Any]:
    """The inbound event. message_id must be unique per customer message: re-sending the same
    message_id (e.g. after a timeout) never produces a second reply."""
    return {
        "messageId": uuid.uuid4().hex,
        "conversationId": conversation_id,
        "userId": user_id,
        "channel": channel,
        "text": text,
        "sentAt": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
    }


async def publish(producer: AIOKafkaProducer, message: dict[str, Any]) -> None:
    # Key = conversation_id: all turns of a conversation stay in order through every stage.
    await producer.send_and_wait(
        INBOUND,
        json.dumps(message, ensure_ascii=False).encode("utf-8"),
        key=message["conversationId"].encode("utf-8"),
    )


async def replies_for(
    consumer: AIOKafkaConsumer, message_ids: set[str], timeout: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Read outbound/handoff events until every message id has one (or the timeout)."""
    found: dict[str, dict[str, Any]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while set(found) != message_ids and loop.time() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        for records in batch.values():
            for record in records:
                event = json.loads(record.value)
                if event.get("messageId") in message_ids:
                    found[event["messageId"]] = {"topic": record.topic, **event}
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--user", default="u2001")
    parser.add_argument("--conversation", default=f"demo-{uuid.uuid4().hex[:8]}")
    parser.add_argument("text")
    args = parser.parse_args()
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True
    )
    # Your backend would use a consumer group (group_id="chat-backend") and commit offsets.
    consumer = AIOKafkaConsumer(
        OUTBOUND,
        HANDOFF,
        bootstrap_servers=args.bootstrap,
        auto_offset_reset="latest",
        group_id=None,
    )
    await producer.start()
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=500)  # join before publishing so the reply is not missed
        message = customer_message(args.conversation, args.user, args.text)
        await publish(producer, message)
        reply = (await replies_for(consumer, {message["messageId"]})).get(message["messageId"])
        if reply is None:
            raise SystemExit("no reply within 30 s: is the stack up? (kefu stack status)")
        section = reply.get("reply", {})
        print(f"[{reply['topic']}] {section.get('action')}: {section.get('text', '')}")
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
