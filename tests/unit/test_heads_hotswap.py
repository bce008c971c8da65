"""ModelWatcher: a newly published version is loaded completely, then swapped in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.models import registry
from services.models.heads import DenseHead
from services.models.hotswap import ModelWatcher
from services.models.intent import IntentModel


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _publish(root: Path, payload: str) -> str:
    version_dir = registry.new_version_dir(root, "intent")
    (version_dir / "payload.txt").write_text(payload, encoding="utf-8")
    registry.write_manifest(version_dir, {"kind": "intent"})
    registry.publish(root, "intent", version_dir.name)
    return version_dir.name


def _read(version_dir: Path) -> str:
    return (version_dir / "payload.txt").read_text(encoding="utf-8")


def test_swaps_to_a_new_version_after_the_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    v1 = _publish(tmp_path, "one")
    watcher = ModelWatcher(tmp_path, "intent", _read, interval_s=5.0, clock=clock)
    assert watcher.current() == "one" and watcher.version == v1

    v2 = _publish(tmp_path, "two")
    clock.now = 4.0
    assert watcher.current() == "one"  # not checked yet: CURRENT is read at most every 5 s
    clock.now = 5.5
    assert watcher.poll() is True
    assert watcher.current() == "two" and watcher.version == v2 and watcher.swaps == 1
    clock.now = 20.0
    assert watcher.poll() is False  # same version: nothing to do


def test_old_model_serves_until_the_new_one_is_fully_loaded(tmp_path: Path) -> None:
    _publish(tmp_path, "one")
    seen_during_load: list[str] = []
    watcher: ModelWatcher[str]

    def slow_loader(version_dir: Path) -> str:
        if watcher.version is not None:  # a swap in progress: the old model must still serve
            seen_during_load.append(watcher._model or "")
        return _read(version_dir)

    watcher = ModelWatcher(tmp_path, "intent", slow_loader, interval_s=0.0)
    watcher.load()
    _publish(tmp_path, "two")
    assert watcher.current() == "two"
    assert seen_during_load == ["one"]


def test_a_broken_version_keeps_the_old_model_and_says_why(tmp_path: Path) -> None:
    _publish(tmp_path, "one")

    def loader(version_dir: Path) -> str:
        text = _read(version_dir)
        if text == "broken":
            raise ValueError("corrupt weights")
        return text

    swapped: list[str] = []
    watcher = ModelWatcher(
        tmp_path, "intent", loader, interval_s=0.0, on_swap=lambda v, m: swapped.append(m)
    )
    watcher.load()
    _publish(tmp_path, "broken")
    assert watcher.poll() is False
    assert watcher.current() == "one"
    assert watcher.last_error is not None and "corrupt weights" in watcher.last_error
    _publish(tmp_path, "fixed")
    assert watcher.current() == "fixed" and watcher.last_error is None
    assert swapped == ["one", "fixed"]


def test_no_published_model_is_a_clear_error(tmp_path: Path) -> None:
    watcher = ModelWatcher(tmp_path, "intent", _read)
    with pytest.raises(registry.ModelNotFoundError, match="kefu models build"):
        watcher.current()
    with pytest.raises(ValueError, match="interval_s"):
        ModelWatcher(tmp_path, "intent", _read, interval_s=-1)


def _intent_model(bias: float) -> IntentModel:
    head = DenseHead([np.eye(4, 2, dtype=np.float32)], [np.array([0.0, bias], np.float32)])
    bank = np.eye(4, dtype=np.float32)[:2]
    return IntentModel(["a", "b"], head, 1.0, bank)


def _save_version(root: Path, bias: float) -> str:
    version_dir = registry.new_version_dir(root, "intent")
    _intent_model(bias).save(version_dir)
    registry.write_manifest(version_dir, {"kind": "intent", "bias": bias})
    return version_dir.name


def test_publishing_a_real_intent_model_is_picked_up(tmp_path: Path) -> None:
    x = np.array([[0.5, 0.5, 0.0, 0.0]], dtype=np.float32)
    registry.publish(tmp_path, "intent", _save_version(tmp_path, -5.0))
    watcher = ModelWatcher(tmp_path, "intent", IntentModel.load, interval_s=0.0)
    assert watcher.current().predict(x)[0].intent == "a"

    new_version = _save_version(tmp_path, 5.0)
    assert watcher.current().predict(x)[0].intent == "a"  # written but not yet published
    registry.publish(tmp_path, "intent", new_version)
    assert watcher.current().predict(x)[0].intent == "b"
    assert watcher.version == new_version
    manifest = json.loads((tmp_path / "intent" / new_version / "manifest.json").read_text())
    assert manifest["bias"] == 5.0
