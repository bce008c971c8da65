"""Which database errors the reply stage waits out instead of dead-lettering the turn."""

from __future__ import annotations

from pymongo.errors import OperationFailure

from services.reply.app import _transient


def test_ferretdb_errors_while_it_stops_are_transient() -> None:
    cancelled = OperationFailure(
        "[msg_update.go:133 handler.(*Handler).updateDocument] [db.go:167 "
        "fsql.(*DB).InTransaction] context canceled",
        details={"ok": 0.0, "errmsg": "context canceled"},
    )
    assert cancelled.code is None and _transient(cancelled)
    assert _transient(OperationFailure("database is locked (5) (SQLITE_BUSY)", code=1))
    assert _transient(OperationFailure("interrupted at shutdown", code=11600))


def test_permanent_errors_are_not_transient() -> None:
    assert not _transient(OperationFailure("unknown operator: $foo", code=2))
    assert not _transient(OperationFailure("document too large", code=1))
    assert not _transient(OperationFailure("E11000 duplicate key", code=11000))
