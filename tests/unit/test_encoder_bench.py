"""`kefu bench nlu` on a tiny encoder: texts loading, figures, and the final JSON line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.nlu import DEFAULT_TEXTS, BenchNluError, bench_nlu_cmd, load_texts
from services.models.build_encoder import build_encoder
from tests.unit.test_encoder_graph import make_model_dir


def test_default_texts_are_bilingual_and_plenty() -> None:
    assert len(DEFAULT_TEXTS) >= 100 and len(set(DEFAULT_TEXTS)) == len(DEFAULT_TEXTS)
    chinese = [t for t in DEFAULT_TEXTS if re.search(r"[\u4e00-\u9fff]", t)]
    assert 40 <= len(chinese) <= len(DEFAULT_TEXTS) - 40


def test_load_texts_cycles_and_rejects_bad_files(tmp_path: Path) -> None:
    file = tmp_path / "texts.txt"
    file.write_text("one\n\n two \nthree\n", encoding="utf-8")
    assert load_texts(file, 5) == ["one", "two", "three", "one", "two"]
    assert load_texts(None, 3) == list(DEFAULT_TEXTS[:3])
    with pytest.raises(BenchNluError, match="no such file"):
        load_texts(tmp_path / "missing.txt", 3)
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(BenchNluError, match="one text per line"):
        load_texts(tmp_path / "blank.txt", 3)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(BenchNluError, match="not UTF-8"):
        load_texts(tmp_path / "latin1.txt", 3)


def test_cli_prints_figures_and_last_line_json(tmp_path: Path) -> None:
    make_model_dir(tmp_path / "base", "bert")
    root = tmp_path / "models"
    build_encoder(root, tmp_path / "base", progress=False, log=lambda _: None)
    result = CliRunner().invoke(
        bench_nlu_cmd, ["--n", "40", "--threads", "1"], env={"KEFU_MODEL_DIR": str(root)}
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["n"] == 40 and summary["threads"] == 1
    # int8 speed depends on the CPU's instructions: the figures say what they ran on
    assert summary["machine"]["cpus"] >= 1 and isinstance(
        summary["machine"]["int8_dot_product"], list
    )
    assert "int8 dot product:" in result.output
    for mode in ("batch1", "batched"):
        figures = summary["onnx_int8"][mode]
        assert figures["texts_per_s"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert summary["onnx_int8"]["batch1"]["calls"] == 40
    assert summary["peak_rss_mb"] >= summary["peak_rss_mb_onnx"] > 0
    # the PyTorch side either ran (ratios present) or says why it did not
    if summary["torch_fp32"] is None:
        assert "not installed" in summary["torch_skipped"]
    else:
        assert set(summary["ratio_onnx_over_torch"]) == {"batch1", "batched"}
        assert summary["cosine_onnx_int8_vs_torch_fp32"] > 0.95


def test_cli_without_an_encoder_says_what_to_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(bench_nlu_cmd, ["--n", "5"], env={"KEFU_MODEL_DIR": str(tmp_path)})
    assert result.exit_code != 0
    assert "kefu models build" in result.output
