"""Shared head machinery: numpy heads match scikit-learn, calibration, n-grams, embedding cache."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from services.models.heads import (
    EMBED_DIM,
    DenseHead,
    NgramFeaturizer,
    char_ngrams,
    embed_cached,
    expected_calibration_error,
    fit_temperature,
    resolve_embedder,
    softmax,
)


def _blobs(
    n_classes: int, n_per: int, dim: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 2
    x = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(n_classes), n_per)
    return x, y


@pytest.mark.parametrize("n_classes", [2, 4])
def test_dense_head_matches_logistic_regression(n_classes: int) -> None:
    x, y = _blobs(n_classes, 40)
    model = LogisticRegression(C=1.0, max_iter=500).fit(x, y)
    head = DenseHead.from_sklearn(model)
    assert head.n_classes == n_classes
    np.testing.assert_allclose(softmax(head.logits(x)), model.predict_proba(x), atol=1e-4)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_dense_head_matches_mlp(n_classes: int) -> None:
    x, y = _blobs(n_classes, 40)
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2000, random_state=0).fit(x, y)
    head = DenseHead.from_sklearn(model)
    np.testing.assert_allclose(softmax(head.logits(x)), model.predict_proba(x), atol=1e-4)


def test_dense_head_round_trips_through_arrays() -> None:
    x, y = _blobs(3, 20)
    head = DenseHead.from_sklearn(MLPClassifier((6,), max_iter=2000, random_state=0).fit(x, y))
    again = DenseHead.from_arrays(head.to_arrays("h_"), "h_")
    np.testing.assert_array_equal(again.logits(x), head.logits(x))
    with pytest.raises(ValueError, match="no layers"):
        DenseHead.from_arrays({}, "h_")


def test_temperature_scaling_tames_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(scale=1.5, size=(4000, 4))
    cumulative = softmax(true_logits).cumsum(axis=1)
    y = (rng.random((4000, 1)) > cumulative).sum(axis=1)  # labels drawn from the true odds
    overconfident = 4.0 * true_logits
    t = fit_temperature(overconfident, y)
    assert 3.0 < t < 5.0
    before = expected_calibration_error(softmax(overconfident), y)
    after = expected_calibration_error(softmax(overconfident / t), y)
    assert after < before / 3 and after < 0.03


def test_char_ngrams_handle_chinese_and_case() -> None:
    grams = char_ngrams("退货 OK", 1, 2)
    assert "退" in grams and "退货" in grams and "ok" in grams and "OK" not in grams
    assert all(g.strip() for g in grams)


def test_ngram_featurizer_rows_are_unit_length_and_survive_saving(tmp_path: Path) -> None:
    texts = ["质量很好", "质量太差了", "great quality", "terrible quality", "质量一般"] * 3
    featurizer = NgramFeaturizer.fit(texts, min_df=2)
    matrix = featurizer.transform([*texts, "完全没见过的字"])
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    np.testing.assert_allclose(norms[:-1], 1.0, rtol=1e-5)
    assert norms[-1] == 0.0  # nothing known: an empty row, not an error
    featurizer.save(tmp_path / "ngrams.json")
    again = NgramFeaturizer.load(tmp_path / "ngrams.json", featurizer.idf)
    assert (again.transform(texts) != featurizer.transform(texts)).nnz == 0


class CountingEmbedder:
    def __init__(self, version: str = "test-v1") -> None:
        self._version = version
        self.calls: list[list[str]] = []

    @property
    def version(self) -> str:
        return self._version

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, len(t) % EMBED_DIM] = 1.0
        return out


def test_embedding_cache_avoids_recomputing(tmp_path: Path) -> None:
    texts = ["a", "bb", "a", "ccc"]
    first = CountingEmbedder()
    seen: list[int] = []
    x1 = embed_cached(first, texts, tmp_path, batch_size=2, progress=seen.append)
    assert sum(seen) == len(texts)
    assert sorted(t for call in first.calls for t in call) == ["a", "bb", "ccc"]

    second = CountingEmbedder()
    x2 = embed_cached(second, [*texts, "dddd"], tmp_path)
    assert second.calls == [["dddd"]]
    np.testing.assert_array_equal(x2[:4], x1)

    other_version = CountingEmbedder("test-v2")
    embed_cached(other_version, texts, tmp_path)
    assert other_version.calls  # a new encoder version never reuses old vectors


def test_resolve_embedder_rejects_unknown_choice(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown encoder"):
        resolve_embedder(tmp_path, "bert")
