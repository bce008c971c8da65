"""Pruning old model versions: the current one and encoders still in use survive."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kefu.cli import main
from services.models import registry


def _version(root: Path, kind: str, name: str, **manifest: str) -> None:
    path = root / kind / name
    path.mkdir(parents=True)
    registry.write_manifest(path, {"kind": kind, **manifest})


def test_keeps_the_newest_and_the_current(tmp_path: Path) -> None:
    names = [f"20261130-0000{i:02d}" for i in range(6)]
    for name in names:
        _version(tmp_path, "recommend", name)
    registry.publish(tmp_path, "recommend", names[0])  # rolled back to the oldest

    assert registry.prune(tmp_path, "recommend", keep=2, dry_run=True) == names[1:4]
    assert registry.list_versions(tmp_path, "recommend") == names  # dry run deletes nothing

    assert registry.prune(tmp_path, "recommend", keep=2) == names[1:4]
    assert registry.list_versions(tmp_path, "recommend") == [names[0], *names[4:]]
    assert registry.prune(tmp_path, "recommend", keep=2) == []


def test_keeps_an_encoder_a_head_still_names(tmp_path: Path) -> None:
    for name in ("20261101-000000", "20261102-000000", "20261103-000000"):
        _version(tmp_path, "encoder", name)
    registry.publish(tmp_path, "encoder", "20261103-000000")
    _version(tmp_path, "intent", "20261101-000001", encoder_version="encoder/20261101-000000")

    removed = registry.prune(tmp_path, "encoder", keep=1)

    assert removed == ["20261102-000000"]
    assert registry.list_versions(tmp_path, "encoder") == ["20261101-000000", "20261103-000000"]


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be at least 1"):
        registry.prune(tmp_path, "intent", keep=0)


def test_prune_command_reports_each_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_MODEL_DIR", str(tmp_path))
    for i in range(4):
        _version(tmp_path, "sentiment", f"20261130-00000{i}")
    registry.publish(tmp_path, "sentiment", "20261130-000003")

    result = CliRunner().invoke(main, ["models", "prune", "--kind", "sentiment", "--keep", "1"])

    assert result.exit_code == 0, result.output
    assert (
        "sentiment  deleted 3: 20261130-000000, 20261130-000001, 20261130-000002" in result.output
    )
    assert registry.list_versions(tmp_path, "sentiment") == ["20261130-000003"]
