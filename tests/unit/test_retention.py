"""Retention rules: the age syntax and what each collection's filter selects (pure parts)."""

from __future__ import annotations

import datetime as dt

import pytest

from services.runtime.retention import RetentionError, parse_retention, prune_rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", dt.timedelta(days=30)),
        ("12h", dt.timedelta(hours=12)),
        (" 90m ", dt.timedelta(minutes=90)),
    ],
)
def test_ages_parse(text: str, expected: dt.timedelta) -> None:
    assert parse_retention(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "-1d", "1.5d", "30 days", "", "10s"])
def test_bad_ages_say_what_is_expected(text: str) -> None:
    with pytest.raises(RetentionError, match=r"e\.g\. 30d"):
        parse_retention(text)


def test_too_short_an_age_is_refused() -> None:
    with pytest.raises(RetentionError, match="at least 1h"):
        parse_retention("59m")


def test_rules_use_each_collections_own_time_type_and_keep_waiting_handoffs() -> None:
    cutoff = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rules = {r.collection: r.filter for r in prune_rules(cutoff)}
    assert set(rules) == {"ingest_seen", "reply_claims", "conversations", "dialogue_state"}
    assert rules["ingest_seen"] == {"at": {"$lt": cutoff.timestamp()}}  # epoch seconds there
    assert rules["conversations"] == {"at": {"$lt": cutoff}}
    assert rules["dialogue_state"]["handoff.active"] == {"$ne": True}
    with pytest.raises(ValueError, match="timezone"):
        prune_rules(dt.datetime(2026, 1, 1))
