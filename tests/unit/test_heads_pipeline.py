"""`kefu train` / `kefu eval` and `train_default_heads`, end to end on small data.

The encoder is replaced by a deterministic bag-of-character-n-grams embedder: these tests are
about data handling, versioning, publishing and reporting, not about the encoder.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kefu.commands.models import eval_group, train
from services.models import heads, registry
from services.models.heads import EMBED_DIM, char_ngrams
from services.models.intent import IntentModel, IntentTrainConfig
from services.models.sentiment import SentimentModel, SentimentTrainConfig
from services.models.train import train_default_heads


class HashingEmbedder:
    """Sum of hashed char n-gram directions, L2-normalised: similar texts, similar vectors."""

    version = "test-hashing-v1"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for gram in char_ngrams(text, 1, 3):
                h = zlib.crc32(gram.encode("utf-8"))
                out[i, h % EMBED_DIM] += 1.0 if (h >> 16) & 1 else -1.0
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-6)
        return out


INTENT_PHRASES = {
    "cancel_order": ["cancel my order", "取消订单", "please cancel order", "不要了 取消"],
    "track_order": ["where is my parcel", "物流到哪了", "track my package", "快递什么时候到"],
    "get_refund": ["i want my money back", "退款", "refund please", "申请退款"],
    "out_of_scope": ["what is the weather", "讲个笑话", "who won the game", "天气怎么样"],
}


def _intent_csv(path: Path, copies: int = 4) -> Path:
    lines = ["text,label"]
    for label, phrases in INTENT_PHRASES.items():
        for phrase in phrases:
            lines += [f"{phrase} {n},{label}" for n in range(copies)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


SENTIMENT_PHRASES = {
    "negative": ["太差了", "terrible", "质量很差", "very bad", "垃圾"],
    "neutral": ["请问发货了吗", "what size", "在吗", "ok", "收到"],
    "positive": ["很好", "great", "非常满意", "love it", "好评"],
}


def _sentiment_csv(path: Path, labels: Sequence[str] = ("negative", "neutral", "positive")) -> Path:
    lines = ["text,label"]
    for label in labels:
        for phrase in SENTIMENT_PHRASES[label]:
            lines += [f"{phrase} {n},{label}" for n in range(4)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setattr(heads, "resolve_embedder", lambda root, choice="auto": HashingEmbedder())
    monkeypatch.setattr(heads, "embedder_for_version", lambda version, root: HashingEmbedder())
    return {
        "KEFU_CACHE_DIR": str(tmp_path / "cache"),
        "KEFU_STATE_DIR": str(tmp_path / "state"),
        "KEFU_MODEL_DIR": str(tmp_path / "default-models"),
    }


def _last_json(output: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return result


def test_train_then_eval_intent(tmp_path: Path, env: dict[str, str]) -> None:
    runner = CliRunner()
    data = _intent_csv(tmp_path / "intents.csv")
    models = tmp_path / "models"
    result = runner.invoke(
        train, ["intent", "--data", str(data), "--out", str(models), "--quiet"], env=env
    )
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    version_dir = models / "intent" / str(summary["version"])
    assert registry.current_version(models, "intent") == summary["version"]
    manifest = registry.read_manifest(version_dir)
    assert manifest["labels"] == sorted(INTENT_PHRASES)
    assert manifest["encoder_version"] == HashingEmbedder.version
    assert len(manifest["data_sha256"]) == 64 and "accuracy" in manifest["metrics"]
    assert IntentModel.load(version_dir).has_oos_class

    png = tmp_path / "cm.png"
    result = runner.invoke(
        eval_group,
        ["intent", "--data", str(data), "--model", str(models), "--png", str(png), "--quiet"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    figures = _last_json(result.output)
    assert figures["n"] == 64
    for key in ("accuracy", "macro_f1", "oos_recall", "oos_false_rejection"):
        assert 0.0 <= float(figures[key]) <= 1.0  # type: ignore[arg-type]
    assert float(figures["accuracy"]) > 0.8  # type: ignore[arg-type]
    assert "precision" in result.output and "cancel_order" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"confusion matrix: {png}" in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"sentence,label\nhi,greeting\n", ":1:"),
        (b"text,label\nhi,greeting\nbye,\n", ":3: empty label"),
        ("text,label\n你好,greeting\n".encode("gb18030"), ":2: not valid UTF-8"),
    ],
)
def test_bad_data_exits_2_naming_the_line(
    tmp_path: Path, env: dict[str, str], content: bytes, expected: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    for command, kind in ((train, "intent"), (eval_group, "intent"), (train, "sentiment")):
        result = CliRunner().invoke(command, [kind, "--data", str(bad)], env=env)
        assert result.exit_code == 2, result.output
        assert expected in result.output and str(bad) in result.output


def test_eval_without_a_model_says_what_to_run(tmp_path: Path, env: dict[str, str]) -> None:
    data = _intent_csv(tmp_path / "intents.csv")
    result = CliRunner().invoke(eval_group, ["intent", "--data", str(data)], env=env)
    assert result.exit_code == 1 and "kefu models build" in result.output


def test_train_then_eval_sentiment_on_binary_data(tmp_path: Path, env: dict[str, str]) -> None:
    runner = CliRunner()
    models = tmp_path / "models"
    data = _sentiment_csv(tmp_path / "sentiment.csv")
    result = runner.invoke(
        train, ["sentiment", "--data", str(data), "--out", str(models), "--quiet"], env=env
    )
    assert result.exit_code == 0, result.output
    model = SentimentModel.load(registry.current_dir(models, "sentiment"))
    assert model.labels == ["negative", "neutral", "positive"]

    binary = _sentiment_csv(tmp_path / "binary.csv", ("negative", "positive"))
    result = runner.invoke(
        eval_group,
        ["sentiment", "--data", str(binary), "--model", str(models), "--quiet"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    figures = _last_json(result.output)
    assert figures["scored_as"] == "negative_vs_not" and figures["n"] == 40
    assert float(figures["accuracy"]) > 0.8  # type: ignore[arg-type]
    assert Path(str(figures["confusion_png"])).is_file()


def test_default_heads_are_trained_once_per_data_and_encoder(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "intent").mkdir(parents=True)
    (data_dir / "sentiment").mkdir()
    _intent_csv(data_dir / "intent" / "en.csv")
    _sentiment_csv(data_dir / "sentiment" / "en.csv")
    models = tmp_path / "models"
    options = {
        "embedder": HashingEmbedder(),
        "cache_dir": tmp_path / "cache",
        "data_dir": data_dir,
        "progress": False,
        "log": lambda message: None,
        "intent_config": IntentTrainConfig(),
        "sentiment_config": SentimentTrainConfig(hidden=0, ngram_max_features=2000),
        "with_snownlp": False,
    }
    first = train_default_heads(models, **options)  # type: ignore[arg-type]
    assert [(r.kind, r.skipped) for r in first] == [("intent", False), ("sentiment", False)]
    second = train_default_heads(models, **options)  # type: ignore[arg-type]
    assert [r.skipped for r in second] == [True, True]
    assert [r.version_dir for r in second] == [r.version_dir for r in first]

    _intent_csv(data_dir / "intent" / "en.csv", copies=5)  # new data: intent only is rebuilt
    third = train_default_heads(models, **options)  # type: ignore[arg-type]
    assert [r.skipped for r in third] == [False, True]
    assert registry.current_dir(models, "intent") == third[0].version_dir
    assert len(registry.list_versions(models, "intent")) == 2
