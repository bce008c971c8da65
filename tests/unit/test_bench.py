"""The benchmarks' pure parts: traffic sources and plans, loss/duplicate/latency analysis."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import pytest

from bench.bus import BenchError, WorkerResult, summarise, window_rate
from bench.pipeline import (
    Received,
    SentMessage,
    analyse,
    backlog_growing,
    inbound_payload,
    message_id_of,
    percentiles,
    search_max_rate,
    stage_breakdown,
)
from bench.traffic import (
    Dialogue,
    TrafficError,
    builtin_dialogues,
    builtin_message_count,
    load_dialogues,
    load_dialogues_jsonl,
    plan_messages,
)

OUT, HANDOFF, DLQ = "kefu.outbound.v1", "kefu.handoff.v1", "kefu.dlq.v1"


# -- traffic ---------------------------------------------------------------------------------------


def test_builtin_traffic_is_bilingual_varied_and_large_enough() -> None:
    dialogues = builtin_dialogues()
    assert builtin_message_count() >= 150
    languages = {d.language for d in dialogues}
    assert languages == {"zh", "en"}
    # follow-up turns that only quote an order number repeat on purpose (filled per customer)
    texts = [t for d in dialogues for t in d.turns if "{order_id}" not in t]
    assert len(set(texts)) == len(texts), "duplicated built-in messages"
    # mixed, not in blocks: the first ten dialogues already hold both languages
    assert {d.language for d in dialogues[:10]} == {"zh", "en"}


def test_jsonl_dialogues_load_and_bad_lines_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "d.jsonl"
    good.write_text(
        json.dumps(
            {"dialogue_id": "a", "language": "zh", "customer_turns": ["你好", "在吗"]},
            ensure_ascii=False,
        )
        + "\n\n"
        + json.dumps({"dialogue_id": "b", "language": "en", "customer_turns": ["hi"]})
        + "\n",
        encoding="utf-8",
    )
    loaded = load_dialogues_jsonl(good)
    assert loaded == [Dialogue("a", "zh", ("你好", "在吗")), Dialogue("b", "en", ("hi",))]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"dialogue_id": "a", "customer_turns": ["x"]}\n{not json\n', encoding="utf-8")
    with pytest.raises(TrafficError, match=r"bad\.jsonl:2"):
        load_dialogues_jsonl(bad)
    empty_turns = tmp_path / "e.jsonl"
    empty_turns.write_text('{"dialogue_id": "a", "customer_turns": []}\n', encoding="utf-8")
    with pytest.raises(TrafficError, match="non-empty list"):
        load_dialogues_jsonl(empty_turns)
    with pytest.raises(TrafficError, match="no such file"):
        load_dialogues_jsonl(tmp_path / "missing.jsonl")


def test_yaml_scripts_give_their_customer_turns_only(tmp_path: Path) -> None:
    assert load_dialogues(None) == (builtin_dialogues(), "builtin")
    script = tmp_path / "conversations.yaml"
    script.write_text(
        "conversations:\n"
        "  - id: c1\n    user: u2001\n    language: en\n    turns:\n"
        "      - say: hello\n        expect: answer\n"
        "      - control: release\n"
        '      - say: "where is {order:shipped}"\n',
        encoding="utf-8",
    )
    dialogues, source = load_dialogues(script)
    assert source == str(script)
    assert dialogues == [Dialogue("c1", "en", ("hello", "where is {order_id}"))]


def test_plan_keeps_each_conversations_turns_in_order_and_fills_order_ids() -> None:
    dialogues = [
        Dialogue("d1", "zh", ("一", "二", "订单{order_id}")),
        Dialogue("d2", "en", ("one", "two")),
    ]
    plan = plan_messages(dialogues, 40, run_id="t", active=2, order_ids={"u1002": ["7730192846"]})
    assert len(plan) == 40
    by_conversation: dict[str, list[int]] = defaultdict(list)
    for msg in plan:
        by_conversation[msg.conversation_id].append(msg.turn)
        assert msg.user_id.startswith("u1" if msg.language == "zh" else "u2")
    for turns in by_conversation.values():
        assert turns == list(range(len(turns))), "turns out of order"
    # consecutive sends come from different conversations while two are open
    assert all(a.conversation_id != b.conversation_id for a, b in itertools.pairwise(plan))
    filled = [m.text for m in plan if m.text.startswith("订单")]
    assert "订单7730192846" in filled  # u1002 quotes one of their own orders
    assert all(len(t) == len("订单") + 10 and t[2:].isdigit() for t in filled)
    with pytest.raises(TrafficError):
        plan_messages([], 1, run_id="t")


# -- analysis --------------------------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    p = percentiles([float(v) for v in range(1, 101)])
    assert (p["p50"], p["p95"], p["p99"], p["max"], p["n"]) == (50.0, 95.0, 99.0, 100.0, 100)
    assert percentiles([])["p99"] is None
    assert percentiles([7.0])["p50"] == 7.0


def envelope(mid: str, action: str = "answer") -> dict[str, object]:
    return {
        "messageId": mid,
        "sentAt": "2026-01-01T00:00:00Z",
        "latencies": [
            {"stage": "ingest", "ms": 1.0, "at": "2026-01-01T00:00:00.010Z"},
            {"stage": "nlu", "ms": 20.0, "at": "2026-01-01T00:00:00.050Z"},
        ],
        "reply": {"action": action},
        "language": "en",
    }


def test_analyse_counts_lost_duplicated_dead_lettered_and_late() -> None:
    t0 = 1_000.0
    sent = [SentMessage(f"m{i}", "c", t0 + i, t0 + i, "en") for i in range(6)]
    received = [
        Received(OUT, int((t0 + 0) * 1000) + 40, "m0", envelope("m0")),
        Received(OUT, int((t0 + 1) * 1000) + 60, "m1", envelope("m1")),
        Received(OUT, int((t0 + 1) * 1000) + 90, "m1", envelope("m1")),  # duplicate
        Received(HANDOFF, int((t0 + 2) * 1000) + 30, "m2", envelope("m2", "forward")),
        Received(DLQ, int((t0 + 3) * 1000) + 5, "m3", {"reason": "invalid_field"}),
        Received(OUT, int((t0 + 4) * 1000) + 99_000, "m4", envelope("m4")),  # after the timeout
        Received(OUT, 0, "not-ours", envelope("not-ours")),
    ]
    summary = analyse(sent, received, reply_timeout=30.0)
    assert summary["sent"] == 6
    assert summary["answered"] == 3  # m0, m1, m2 (handoff topic only)
    assert summary["lost"] == 1 and summary["lost_ids"] == ["m5"]
    assert summary["late"] == 1
    assert summary["dlq"] == 1 and summary["dlq_reasons"] == {"invalid_field": 1}
    assert summary["duplicated_replies"] == 1 and summary["duplicated_ids"] == ["m1"]
    assert summary["e2e_ms"]["max"] == 60.0 and summary["e2e_ms"]["p50"] == 40.0
    assert summary["actions"] == {"answer": 2, "forward(handoff topic only)": 1}


def test_stage_breakdown_separates_time_inside_from_waiting() -> None:
    stages = stage_breakdown([envelope("m0")])
    assert stages["ingest"]["p50_ms"] == 1.0
    assert stages["ingest"]["wait_p50_ms"] == 9.0  # 10 ms after sentAt, 1 ms of it inside
    assert stages["nlu"]["wait_p50_ms"] == 20.0  # 40 ms after ingest finished, 20 inside


def test_message_id_of_a_dead_letter_is_read_from_its_payload() -> None:
    payload = json.dumps({"messageId": "m9", "text": "x"})
    assert message_id_of(DLQ, {"payload": payload}) == "m9"
    assert message_id_of(DLQ, {"payload": "{broken"}) is None
    assert message_id_of(DLQ, {"payloadBytes": "AAA="}) is None
    assert message_id_of(OUT, {"messageId": "m1"}) == "m1"


def test_backlog_growing_tells_a_steady_state_from_falling_behind() -> None:
    steady = [(t / 2, 20 + (t % 3)) for t in range(40)]
    growing = [(t / 2, 5 * t) for t in range(40)]
    assert not backlog_growing(steady, rate=50.0)
    assert backlog_growing(growing, rate=50.0)
    assert not backlog_growing(growing[:3], rate=50.0)  # too few samples to say


def test_inbound_payload_is_what_a_platform_sends() -> None:
    from bench.traffic import PlannedMessage

    msg = PlannedMessage("c-1", "u2001", "en", "hi", 0, "d")
    payload = inbound_payload(msg, "m-1", 1_700_000_000.123456)
    assert payload["sentAt"] == "2023-11-14T22:13:20.123456Z"
    assert {payload["messageId"], payload["conversationId"], payload["userId"]} == {
        "m-1",
        "c-1",
        "u2001",
    }


# -- bus benchmark ---------------------------------------------------------------------------------


def test_window_rate_and_summary() -> None:
    span, rate = window_rate([1000, 1500, 2000])
    assert span == 1.0 and rate == 2.0
    with pytest.raises(BenchError):
        window_rate([5])
    raw = [
        WorkerResult("raw", 1000, 1.0, 1000.0, 0.4, 0.4, 0),
        WorkerResult("raw", 1000, 2.0, 500.0, 0.6, 0.6, 0),
    ]
    faust = [WorkerResult("faust", 1000, 2.5, 400.0, 0.7, 0.7, 0)]
    summary = summarise(raw, faust, partitions=3)
    assert summary["raw_aiokafka"]["cpu_ms_per_msg"] == 0.4  # the best round
    assert summary["cpu_ratio_faust_over_raw"] == 1.75
    assert summary["throughput_ratio_raw_over_faust"] == 2.5
    assert summary["within_target"] is False  # throughput 2.5x > 2x


def test_find_max_climbs_then_bisects_towards_the_capacity() -> None:
    import asyncio

    capacity = 17.0  # a stack that keeps within budget up to 17 msg/s
    drains: list[int] = []

    async def run_at(rate: float) -> dict[str, object]:
        return {"rate": rate, "within_budget": rate <= capacity}

    async def drain() -> None:
        drains.append(1)

    steps, best = asyncio.run(
        search_max_rate(run_at, drain, start=4.0, factor=1.5, max_steps=10, refine_steps=2)
    )
    rates = [s["rate"] for s in steps]
    assert rates[:5] == [4.0, 6.0, 9.0, 13.5, 20.25]  # the ladder, up to the first failure
    assert len(rates) == 7 and len(drains) == 2  # two bisections, each after a drain
    assert best is not None and 13.5 < best["rate"] <= capacity  # better than the ladder's 13.5
    never, none_best = asyncio.run(
        search_max_rate(run_at, drain, start=30.0, factor=1.5, max_steps=10, refine_steps=2)
    )
    assert none_best is None and len(never) == 1  # over budget from the start: no bisection


def test_find_max_measures_half_the_maximum_for_its_own_duration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reported p99 at half the maximum comes from a run of ``half_max_duration`` seconds,
    not from one short ladder step (~200 messages: its second or third slowest message)."""
    import asyncio

    from bench import pipeline
    from services.runtime.settings import load_settings

    runs: list[tuple[float, float]] = []

    async def run_step(settings, dialogues, order_ids, rate, options, say):  # type: ignore[no-untyped-def]
        runs.append((rate, options.duration))
        return {
            "rate": rate, "achieved_msg_per_s": rate, "within_budget": rate <= 10.0,
            "lost": 0, "duplicated_replies": 0, "backlog_growing": False,
            "e2e_ms": {"p50": 60.0, "p99": 90.0},
        }  # fmt: skip

    async def nothing(*args: object, **kwargs: object) -> None:
        return None

    monkeypatch.setattr(pipeline, "run_step", run_step)
    monkeypatch.setattr(pipeline, "check_kafka", nothing)
    monkeypatch.setattr(pipeline, "_drain_or_fail", nothing)
    monkeypatch.setattr(pipeline, "check_stack_ready", lambda settings, ports: None)
    monkeypatch.setattr(pipeline, "customer_order_ids", lambda settings: {})
    options = pipeline.PipelineOptions(
        rate=4.0, duration=20.0, find_max=True, warmup=0, encoder_ceiling=False,
        refine_steps=0, half_max_duration=60.0,
    )  # fmt: skip
    summary = asyncio.run(pipeline._run(load_settings(), options, say=lambda s: None))
    assert {d for _, d in runs[:-1]} == {20.0}  # the ladder keeps --duration
    assert runs[-1] == (summary["max_rate"] / 2, 60.0)  # then half the maximum, for 60 s
    assert summary["at_half_max"]["rate"] == summary["max_rate"] / 2
