"""Ingest's pure logic: validation, normalisation, language, PII."""

from __future__ import annotations

import json

import pytest

from services.ingest.logic import enrich, parse_inbound
from services.ingest.text import detect_language, find_pii, luhn_ok, mask, normalise
from services.runtime.envelope import EnvelopeError


def inbound(**fields: object) -> bytes:
    base: dict[str, object] = {
        "messageId": "m-1",
        "conversationId": "c-1",
        "userId": "u1001",
        "text": "where is my order 7730192846?",
        "sentAt": "2026-11-29T08:00:00Z",
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b"[1, 2]", "not_an_object"),
        (b"", "empty_payload"),
        (b"[" * 200_000 + b"]" * 200_000, "payload_too_large"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "malformed_json"),
        (inbound(text=None), "missing_field"),
        (inbound(text=42), "invalid_field"),
        (inbound(messageId=None), "missing_field"),
        (inbound(userId={"$ne": None}), "invalid_field"),
        (inbound(userId="u1; drop"), "invalid_field"),
        (inbound(sentAt="yesterday"), "invalid_field"),
        (inbound(schemaVersion=99), "unsupported_schema_version"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_inbound(raw)
    assert info.value.reason == reason
    assert info.value.detail


def test_valid_message_is_enriched() -> None:
    env = enrich(parse_inbound(inbound(text="我的订单7730192846到哪了？电话 13812345678")), 4000)
    assert env.language == "zh"
    assert env.masked_text == "我的订单7730192846到哪了?电话 [PHONE]"
    assert [p.type for p in env.ingest.pii] == ["phone"]
    assert env.event_id and env.trace_id and env.received_at.seconds > 0
    assert env.sent_at.seconds > 0


def test_long_text_is_truncated_and_flagged_not_dropped() -> None:
    env = enrich(parse_inbound(inbound(text="太慢了" * 3000 + "到底什么时候发货")), 4000)
    assert len(env.text) == 4000
    assert env.ingest.truncated and env.ingest.original_length == 9008
    # the end, where a rant asks its question, is kept with the start
    assert env.text.startswith("太慢了") and env.text.endswith("到底什么时候发货")


def test_normalise_nfkc_and_control_characters() -> None:
    n = normalise("ｈｅｌｌｏ\u200b\x07 there\n\nbye\ufeff", 100)
    assert n.text == "hello there bye"
    assert n.control_chars_removed and not n.truncated


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("where is my order", "en"),
        ("cancel my order pls", "en"),
        ("我的快递怎么还没到", "zh"),
        ("我的order怎么还没到啊", "zh"),
        ("亲 在吗", "zh"),
        ("my 快递 has not arrived for two weeks now", "en"),
        ("Wo ist meine Bestellung bitte", "other"),
        ("注文はいつ届きますか", "other"),
    ],
)
def test_language(text: str, lang: str) -> None:
    assert detect_language(text)[0] == lang


@pytest.mark.parametrize(
    "text",
    ["how do i get a refund", "can I order from Canada?", "my parcel is late again",
     "where is my refund for it?", "i live in brazil, can i shop here"],
)  # fmt: skip
def test_an_english_sentence_is_sure_enough_to_switch_the_reply_language(text: str) -> None:
    # lingua alone gives these 0.36-0.58; reply keeps the conversation's language below
    # SURE_LANGUAGE, so a customer switching from Chinese to English got Chinese answers
    from services.reply.decide import SURE_LANGUAGE

    language, confidence = detect_language(text)
    assert language == "en" and confidence >= SURE_LANGUAGE


def test_a_word_or_two_or_an_order_id_is_not_sure() -> None:
    from services.reply.decide import SURE_LANGUAGE

    for text in ("ok", "thanks!", "7730192846", "👍"):
        assert detect_language(text)[1] < SURE_LANGUAGE, text


def test_chinese_input_punctuation_alone_leans_chinese_but_not_surely() -> None:
    from services.reply.decide import SURE_LANGUAGE

    # a new conversation that opens with "？？？" was answered in English
    for raw in ("？？？", "。。。", "7730192846？", "！！"):
        language, confidence = detect_language(normalise(raw, 4000).text, raw)
        assert language == "zh" and confidence < SURE_LANGUAGE, raw
    for raw in ("???", "7730192846", "“…”", "👍"):
        assert detect_language(normalise(raw, 4000).text, raw)[0] == "other", raw


def test_pii_phone_email_card_but_not_order_ids() -> None:
    text = (
        "order 7730192846, call +44 20 7946 0958 or 13812345678, a@b.com, card 4111 1111 1111 1111"
    )
    spans = find_pii(text)
    assert [s.type for s in spans] == ["phone", "phone", "email", "bank_card"]
    masked = mask(text, spans)
    assert "7730192846" in masked
    assert masked.count("[PHONE]") == 2 and "[EMAIL]" in masked and "[CARD]" in masked


def test_card_numbers_need_a_valid_luhn_checksum() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert find_pii("ref 4111 1111 1111 1112") == []
