"""`kefu tap`: a topic as a stream of rows for analysts (plain functions; the command is thin).

Rows are proto JSON with snake_case field names, flattened to dotted columns for CSV. Customer
text is masked unless the analyst asks for --unmask, which is logged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from kefu.v1.events_pb2 import BehaviorEvent, ControlEvent, DeadLetter, Envelope
from services.runtime.settings import (
    ALL_TOPICS,
    TOPIC_BEHAVIOR,
    TOPIC_CONTROL,
    TOPIC_DLQ,
)

MESSAGE_TYPES: dict[str, type[Message]] = {
    TOPIC_DLQ: DeadLetter,
    TOPIC_BEHAVIOR: BehaviorEvent,
    TOPIC_CONTROL: ControlEvent,
}

# What an analyst usually wants from an envelope topic, in this order.
DEFAULT_ENVELOPE_FIELDS = (
    "sent_at", "conversation_id", "message_id", "user_id", "channel", "language", "masked_text",
    "nlu.intent", "nlu.confidence", "nlu.out_of_scope", "sentiment.label", "sentiment.escalate",
    "recommend.attached", "reply.action", "reply.text", "reply.handoff_reason",
)  # fmt: skip

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9.\-]{1,253}\.[A-Za-z]{2,24}")
_LONG_DIGITS = re.compile(r"(?<!\d)(?:\+?\d[\s\-]?){11,19}(?!\d)")


class TapError(ValueError):
    """A bad tap request (unknown topic or field, bad filter); the message says what is valid."""


def message_type(topic: str) -> type[Message]:
    if topic not in ALL_TOPICS:
        raise TapError(f"unknown topic {topic!r}; kefu topics are: {', '.join(ALL_TOPICS)}")
    return MESSAGE_TYPES.get(topic, Envelope)


def field_paths(descriptor: Any, prefix: str = "") -> set[str]:
    """Every dotted field path of a message type (repeated/map fields end the path)."""
    paths: set[str] = set()
    for f in descriptor.fields:
        path = prefix + f.name
        paths.add(path)
        sub = f.message_type
        if (
            sub is not None
            and f.type == FieldDescriptor.TYPE_MESSAGE
            and not f.is_repeated
            and not sub.GetOptions().map_entry
            and not sub.full_name.startswith("google.protobuf")
        ):
            paths |= field_paths(sub, path + ".")
    return paths


def check_fields(topic: str, names: Iterable[str]) -> None:
    known = field_paths(message_type(topic).DESCRIPTOR)
    for name in names:
        if name not in known:
            close = sorted(p for p in known if p.split(".")[-1] == name.split(".")[-1])
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise TapError(f"{topic} has no field {name!r}{hint}")


def parse_filters(specs: Sequence[str], topic: str) -> list[tuple[str, str]]:
    filters = []
    for spec in specs:
        if "=" not in spec:
            raise TapError(f"--filter {spec!r}: expected field=value, e.g. nlu.intent=track_order")
        name, value = spec.split("=", 1)
        filters.append((name.strip(), value))
    check_fields(topic, [n for n, _ in filters])
    return filters


def get_path(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def mask_text(text: str) -> str:
    """Mask PII in free text that ingest has not masked (DLQ payloads, entity values)."""
    text = _EMAIL.sub("[EMAIL]", text)
    return _LONG_DIGITS.sub("[NUMBER]", text)


def to_row(raw: bytes, topic: str, unmask: bool) -> dict[str, Any]:
    """Decode one record into a dict; masked unless unmask. Undecodable records become a row
    with `_error` so the analyst sees them rather than a silent gap."""
    msg = message_type(topic)()
    try:
        json_format.Parse(raw.decode("utf-8"), msg, ignore_unknown_fields=True)
    except Exception as exc:  # a bad record is shown, never fatal to the tap
        return {
            "_error": f"undecodable record: {type(exc).__name__}",
            "_raw": mask_text(raw[:200].decode("utf-8", "replace")),
        }
    row = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    # up to 128 KB of float16 token states for sentiment's model: nothing to read
    (row.get("nlu") or {}).pop("states", None)
    if unmask:
        return row
    if isinstance(msg, Envelope):
        row["text"] = msg.masked_text
        for ent in get_path(row, "nlu.entities") or []:
            if ent.get("type") in ("phone", "email"):
                ent["text"] = ent["value"] = f"[{ent['type'].upper()}]"
        summary = get_path(row, "reply.handoff_summary")
        if summary:
            row["reply"]["handoff_summary"] = mask_text(summary)
    elif isinstance(msg, DeadLetter):
        if "payload" in row:
            row["payload"] = mask_text(row["payload"])
        row.pop("payload_bytes", None)
    return row


def matches(row: dict[str, Any], filters: Sequence[tuple[str, str]]) -> bool:
    for name, expected in filters:
        value = get_path(row, name)
        if isinstance(value, bool):
            value = "true" if value else "false"
        if str(value if value is not None else "") != expected:
            return False
    return True


def select(row: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    return {f: get_path(row, f) for f in fields}


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("metadata", "slots"):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, list | dict):
            flat[name] = json.dumps(value, ensure_ascii=False)
        else:
            flat[name] = value
    return flat
