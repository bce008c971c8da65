from __future__ import annotations

import pytest

from kefu import tap
from kefu.v1.events_pb2 import DeadLetter, Envelope
from services.runtime.envelope import encode


def test_rows_are_masked_unless_asked() -> None:
    env = Envelope(message_id="m1", text="call 13812345678", masked_text="call [PHONE]")
    env.nlu.entities.add(type="phone", text="13812345678", value="13812345678")
    row = tap.to_row(encode(env), "kefu.enriched.v1", unmask=False)
    assert row["text"] == "call [PHONE]"
    assert "13812345678" not in str(row)
    assert tap.to_row(encode(env), "kefu.enriched.v1", unmask=True)["text"] == "call 13812345678"


def test_dlq_payload_is_masked() -> None:
    dl = DeadLetter(
        stage="ingest", reason="malformed_json", payload='{"text": "mail a@b.com 13812345678"'
    )
    row = tap.to_row(encode(dl), "kefu.dlq.v1", unmask=False)
    assert "a@b.com" not in row["payload"] and "13812345678" not in row["payload"]


def test_unknown_topic_and_field_errors_name_the_valid_ones() -> None:
    with pytest.raises(tap.TapError, match=r"kefu\.inbound\.v1"):
        tap.message_type("orders")
    with pytest.raises(tap.TapError, match=r"nlu\.intent"):
        tap.check_fields("kefu.nlu.v1", ["intent"])
    with pytest.raises(tap.TapError, match="field=value"):
        tap.parse_filters(["nlu.intent"], "kefu.nlu.v1")


def test_filter_select_flatten() -> None:
    env = Envelope(message_id="m1", language="en")
    env.nlu.intent = "track_order"
    row = tap.to_row(encode(env), "kefu.nlu.v1", unmask=False)
    assert tap.matches(row, tap.parse_filters(["nlu.intent=track_order"], "kefu.nlu.v1"))
    assert not tap.matches(row, [("language", "zh")])
    assert tap.flatten(tap.select(row, ["message_id", "nlu.intent"])) == {
        "message_id": "m1",
        "nlu.intent": "track_order",
    }


def test_token_states_for_sentiment_are_not_shown() -> None:
    env = Envelope(message_id="m1", text="hi")
    env.nlu.intent = "greeting"
    env.nlu.states = b"\x00\x3c" * 64
    env.nlu.states_layer = 8
    for unmask in (False, True):
        row = tap.to_row(encode(env), "kefu.nlu.v1", unmask=unmask)
        assert "states" not in row["nlu"] and row["nlu"]["intent"] == "greeting"
