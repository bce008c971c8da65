"""ingest's per-message logic as a plain function: raw inbound bytes → normalised envelope."""

from __future__ import annotations

from google.protobuf import json_format

from kefu.v1.events_pb2 import Envelope
from services.ingest.text import detect_language, find_pii, mask, normalise
from services.runtime import envelope as codec
from services.runtime.envelope import EnvelopeError
from services.runtime.mongo import CONVERSATION_ID_RE, MESSAGE_ID_RE, USER_ID_RE

REQUIRED = ("message_id", "conversation_id", "user_id")
_ID_RULES = (
    ("message_id", MESSAGE_ID_RE),
    ("conversation_id", CONVERSATION_ID_RE),
    ("user_id", USER_ID_RE),
)


def parse_inbound(raw: bytes | None) -> Envelope:
    """Validate an inbound customer message; EnvelopeError says what is wrong."""
    obj = codec.parse_json_object(raw)
    if "text" not in obj:
        raise EnvelopeError("missing_field", "required field 'text' is missing")
    if not isinstance(obj["text"], str):
        raise EnvelopeError(
            "invalid_field", f"'text' must be a string, got {type(obj['text']).__name__}"
        )
    env = Envelope()
    try:
        json_format.ParseDict(obj, env, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise EnvelopeError("invalid_field", str(exc)[:500]) from None
    except RecursionError:
        raise EnvelopeError("malformed_json", "JSON nested too deeply") from None
    codec.require_fields(env, REQUIRED)
    for name, rx in _ID_RULES:
        if not rx.match(getattr(env, name)):
            raise EnvelopeError(
                "invalid_field", f"{name} {getattr(env, name)[:80]!r} does not match {rx.pattern}"
            )
    if env.schema_version > codec.SCHEMA_VERSION:
        raise EnvelopeError(
            "unsupported_schema_version", f"schema_version {env.schema_version} is not supported"
        )
    return env


def enrich(env: Envelope, max_chars: int) -> Envelope:
    """Normalise text, detect language and PII, and fill the ingest section (in place)."""
    raw = env.text
    norm = normalise(raw, max_chars)
    env.schema_version = codec.SCHEMA_VERSION
    env.text = norm.text
    env.ingest.truncated = norm.truncated
    env.ingest.original_length = norm.original_length
    env.ingest.control_chars_removed = norm.control_chars_removed
    language, confidence = detect_language(norm.text, raw)
    env.language = language
    env.ingest.language_confidence = confidence
    spans = find_pii(norm.text)
    for span in spans:
        env.ingest.pii.add(type=span.type, start=span.start, end=span.end)
    env.masked_text = mask(norm.text, spans)
    env.received_at.GetCurrentTime()
    if not env.HasField("sent_at"):
        env.sent_at.CopyFrom(env.received_at)
    if not env.event_id:
        env.event_id = codec.new_id()
    if not env.trace_id:
        env.trace_id = codec.new_id()
    if not env.channel:
        env.channel = "unknown"
    return env
