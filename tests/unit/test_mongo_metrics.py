"""The MongoDB command timer: one observation per finished command, by command and collection."""

from __future__ import annotations

from datetime import timedelta

from pymongo import monitoring

from services.runtime.mongo import CommandTimer


def test_command_timer_observes_each_finished_command() -> None:
    from prometheus_client import REGISTRY

    def count(command: str, collection: str, outcome: str) -> float:
        labels = {"command": command, "collection": collection, "outcome": outcome}
        return REGISTRY.get_sample_value("kefu_mongo_command_seconds_count", labels) or 0.0

    timer = CommandTimer()
    conn = ("127.0.0.1", 27017)
    before_ok, before_err = count("update", "dialogue_state", "ok"), count("find", "", "error")
    timer.started(monitoring.CommandStartedEvent({"update": "dialogue_state"}, "kefu", 1, conn, 1))
    timer.succeeded(
        monitoring.CommandSucceededEvent(
            timedelta(milliseconds=1), {"ok": 1}, "update", 1, conn, 1, database_name="kefu"
        )
    )
    timer.started(monitoring.CommandStartedEvent({"find": 7}, "kefu", 2, conn, 2))
    timer.failed(
        monitoring.CommandFailedEvent(
            timedelta(milliseconds=1), {"ok": 0}, "find", 2, conn, 2, database_name="kefu"
        )
    )
    # a finish without a start (listener registered mid-flight) is ignored, not an error
    timer.succeeded(
        monitoring.CommandSucceededEvent(
            timedelta(milliseconds=1), {"ok": 1}, "ping", 3, conn, 3, database_name="kefu"
        )
    )
    assert count("update", "dialogue_state", "ok") == before_ok + 1
    assert count("find", "", "error") == before_err + 1
