"""bench/nlu_memory.py on a tiny encoder: the steps it measures and its summary."""

from __future__ import annotations

from pathlib import Path

from bench.nlu_memory import RSS_TARGET_MB, measure, memory_mb
from services.models.build_encoder import build_encoder
from tests.unit.test_encoder_graph import make_model_dir


def test_memory_mb_reads_this_process() -> None:
    before = memory_mb()
    ballast = bytearray(64 * 1024 * 1024)  # 64 MiB, touched
    ballast[::4096] = b"x" * len(ballast[::4096])
    after = memory_mb()
    assert after["VmHWM"] >= after["VmRSS"] > 0
    assert after["VmRSS"] - before["VmRSS"] >= 60  # the ballast shows up
    del ballast


def test_measure_reports_each_step_and_the_peak(tmp_path: Path) -> None:
    make_model_dir(tmp_path / "base", "bert")
    root = tmp_path / "models"
    build_encoder(root, tmp_path / "base", progress=False, log=lambda _: None)
    lines: list[str] = []
    summary = measure(root, None, n=30, with_runtime=False, say=lines.append)
    steps = [s["step"] for s in summary["steps"]]
    assert steps == [
        "python + numpy",
        "Encoder.load",
        "30 texts, batch 1",
        "30 texts, batches of 32",
    ]
    assert summary["intent_head"] is False and "no intent head" in summary["note"]
    assert summary["peak_rss_mb"] >= summary["rss_mb"] > 0
    assert summary["peak_rss_mb"] == max(s["VmHWM"] for s in summary["steps"])
    assert summary["encoder_vocab"] == 20 and summary["target_mb"] == RSS_TARGET_MB
    assert len(lines) == 5  # one line per step and the note
