"""The envelope codec: proto3 JSON (UTF-8) on every topic, validated on the way in.

Decoding never raises anything but ``EnvelopeError``, whose ``reason`` is a short machine-readable
code for the DLQ and metrics, and whose message says what was wrong.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from kefu.v1.events_pb2 import Envelope, StageLatency

SCHEMA_VERSION = 1
# Larger payloads are rejected before parsing: a chat message never needs this much.
MAX_PAYLOAD_BYTES = 256 * 1024


class EnvelopeError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_json_object(raw: bytes | str | None) -> dict:
    """Bytes → JSON object, or EnvelopeError with reason payload_too_large / invalid_utf8 /
    malformed_json / not_an_object."""
    if raw is None:
        raise EnvelopeError("empty_payload", "the message has no value")
    if isinstance(raw, bytes):
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise EnvelopeError(
                "payload_too_large", f"{len(raw)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError("invalid_utf8", f"not UTF-8 at byte {exc.start}") from None
    else:
        text = raw
    if not text.strip():
        raise EnvelopeError("empty_payload", "the message value is empty")
    try:
        obj = json.loads(text)
    except RecursionError:
        raise EnvelopeError("malformed_json", "JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise EnvelopeError(
            "malformed_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(obj, dict):
        raise EnvelopeError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def decode(raw: bytes | str | None, message: Message | None = None) -> Envelope:
    """Parse an envelope (or another kefu.v1 message) from proto3 JSON.

    Unknown fields are ignored, so producers may be newer than consumers within a major version.
    """
    obj = parse_json_object(raw)
    target = message if message is not None else Envelope()
    try:
        json_format.ParseDict(obj, target, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise EnvelopeError("invalid_field", str(exc)[:500]) from None
    except RecursionError:
        raise EnvelopeError("malformed_json", "JSON nested too deeply") from None
    if isinstance(target, Envelope) and target.schema_version > SCHEMA_VERSION:
        raise EnvelopeError(
            "unsupported_schema_version",
            f"schema_version {target.schema_version} is newer than {SCHEMA_VERSION}",
        )
    return target  # type: ignore[return-value]


def encode(message: Message) -> bytes:
    """proto3 JSON, compact, UTF-8 (Chinese stays readable in analyst tools)."""
    return json_format.MessageToJson(
        message, indent=None, ensure_ascii=False, preserving_proto_field_name=False
    ).encode("utf-8")


def to_dict(message: Message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=False)


def new_id() -> str:
    return uuid.uuid4().hex


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def ts_seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def add_latency(env: Envelope, stage: str, started: float) -> float:
    """Append this stage's latency (perf_counter based) and return it in seconds."""
    elapsed = time.perf_counter() - started
    entry: StageLatency = env.latencies.add()
    entry.stage = stage
    entry.ms = round(elapsed * 1000.0, 3)
    entry.at.GetCurrentTime()
    return elapsed


def require_fields(env: Envelope, names: Iterable[str]) -> None:
    missing = [n for n in names if not getattr(env, n)]
    if missing:
        raise EnvelopeError("missing_field", f"required field(s) missing: {', '.join(missing)}")
