"""Intent head on synthetic embeddings: accuracy, calibration, ranking, out-of-scope, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.models.datasets import OUT_OF_SCOPE
from services.models.heads import EMBED_DIM
from services.models.intent import (
    IntentModel,
    IntentTrainConfig,
    OosScores,
    choose_thresholds,
    oos_metrics,
    train_intent_model,
)
from tests.unit.tuned_fixtures import random_tune_start, token_states

INTENTS = ["cancel_order", "get_refund", "track_order", "place_order", "recover_password"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _sample(
    centre: np.ndarray, n: int, rng: np.random.Generator, spread: float = 0.5
) -> np.ndarray:
    return _unit(centre + spread * rng.normal(size=(n, EMBED_DIM)) / np.sqrt(EMBED_DIM))


def _dataset(
    rng: np.random.Generator, n_per: int, with_oos: bool
) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """Intent clusters around random directions (like sentence embeddings of paraphrases)
    and out-of-scope rows scattered around other directions."""
    centres = {label: _unit(rng.normal(size=EMBED_DIM)) for label in INTENTS}
    xs, labels = [], []
    for label, centre in centres.items():
        xs.append(_sample(centre, n_per, rng))
        labels += [label] * n_per
    if with_oos:
        for _ in range(n_per):
            xs.append(_sample(_unit(rng.normal(size=EMBED_DIM)), 1, rng))
            labels.append(OUT_OF_SCOPE)
    return np.concatenate(xs), labels, centres


@pytest.fixture(scope="module")
def trained() -> tuple[IntentModel, dict[str, object], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    x, labels, centres = _dataset(rng, 60, with_oos=True)
    order = rng.permutation(len(labels))
    x, labels = x[order], [labels[i] for i in order]
    cut = int(0.8 * len(labels))
    model, metrics = train_intent_model(
        x[:cut], labels[:cut], x[cut:], labels[cut:], IntentTrainConfig(c=10.0)
    )
    return model, metrics, centres


def test_learns_the_intents_and_reports_validation_metrics(trained) -> None:  # type: ignore[no-untyped-def]
    model, metrics, _ = trained
    assert model.labels == sorted([*INTENTS, OUT_OF_SCOPE])
    assert metrics["accuracy"] > 0.9 and metrics["macro_f1"] > 0.9
    assert metrics["oos_false_rejection"] <= 0.05
    assert metrics["temperature"] > 0.0


def test_predictions_carry_a_sorted_top3_ranking(trained) -> None:  # type: ignore[no-untyped-def]
    model, _, centres = trained
    rng = np.random.default_rng(1)
    x = np.concatenate([_sample(centres[label], 20, rng) for label in INTENTS])
    truth = [label for label in INTENTS for _ in range(20)]
    predictions = model.predict(x)
    assert np.mean([p.intent == t for p, t in zip(predictions, truth, strict=True)]) > 0.95
    for p in predictions:
        assert len(p.ranking) == 3
        scores = [s for _, s in p.ranking]
        assert scores == sorted(scores, reverse=True)
        assert OUT_OF_SCOPE not in [label for label, _ in p.ranking]
        if not p.out_of_scope:
            assert p.confidence == scores[0]
        assert 0.0 <= p.confidence <= 1.0


def test_unseen_topics_are_out_of_scope(trained) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = trained
    rng = np.random.default_rng(2)
    novel = np.concatenate([_sample(_unit(rng.normal(size=EMBED_DIM)), 1, rng) for _ in range(50)])
    predictions = model.predict(novel)
    assert np.mean([p.out_of_scope for p in predictions]) >= 0.9
    assert all(p.intent == OUT_OF_SCOPE for p in predictions if p.out_of_scope)


def test_save_and_load_give_identical_predictions(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _, centres = trained
    model.save(tmp_path)
    again = IntentModel.load(tmp_path)
    x = _sample(centres["track_order"], 10, np.random.default_rng(3))
    a, b = model.predict(x), again.predict(x)
    assert [p.intent for p in a] == [p.intent for p in b]
    # the similarity bank is stored as float16: scores agree to a few decimals
    np.testing.assert_allclose([p.similarity for p in a], [p.similarity for p in b], atol=2e-3)
    np.testing.assert_allclose([p.confidence for p in a], [p.confidence for p in b], atol=1e-5)
    assert again.min_similarity == model.min_similarity


def test_load_explains_a_wrong_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="kefu train intent"):
        IntentModel.load(tmp_path)


def test_works_without_out_of_scope_rows() -> None:
    rng = np.random.default_rng(4)
    x, labels, _ = _dataset(rng, 40, with_oos=False)
    model, metrics = train_intent_model(x[::2], labels[::2], x[1::2], labels[1::2])
    assert not model.has_oos_class
    assert "oos_recall" not in metrics
    assert metrics["oos_false_rejection"] <= 0.05
    far = np.concatenate([_sample(_unit(rng.normal(size=EMBED_DIM)), 1, rng) for _ in range(30)])
    assert np.mean([p.out_of_scope for p in model.predict(far)]) > 0.8
    assert model.predict(np.zeros((0, EMBED_DIM), dtype=np.float32)) == []
    with pytest.raises(ValueError, match="embeddings must be"):
        model.predict(np.zeros((2, 3, 4), dtype=np.float32))


def test_choose_thresholds_respects_the_false_rejection_budget() -> None:
    rng = np.random.default_rng(5)
    n = 1000
    in_scope = OosScores(np.zeros(n, bool), rng.uniform(0.5, 1.0, n), rng.uniform(0.8, 1.0, n))
    oos = OosScores(np.zeros(200, bool), rng.uniform(0.2, 0.7, 200), rng.uniform(0.6, 0.85, 200))
    choice = choose_thresholds(in_scope, oos, max_false_rejection=0.04)
    assert choice.val_false_rejection <= 0.04
    assert choice.val_oos_recall is not None and choice.val_oos_recall > 0.2
    blind = choose_thresholds(in_scope, None, max_false_rejection=0.04)
    assert blind.val_oos_recall is None and blind.val_false_rejection <= 0.045


def test_oos_metrics() -> None:
    true = ["a", "a", OUT_OF_SCOPE, OUT_OF_SCOPE]
    predicted = ["a", OUT_OF_SCOPE, OUT_OF_SCOPE, "a"]
    assert oos_metrics(true, predicted) == {"oos_recall": 0.5, "oos_false_rejection": 0.5}
    assert oos_metrics(["a", "b"], ["a", "b"]) == {"oos_false_rejection": 0.0}


def test_choose_thresholds_uses_the_oos_probability_when_the_class_exists() -> None:
    rng = np.random.default_rng(6)
    n = 1000
    # in-scope rows are often split between two related intents (low top_prob), yet unlike
    # out-of-scope rows their out_of_scope probability stays low
    in_scope = OosScores(
        np.zeros(n, bool), rng.uniform(0.3, 1.0, n), rng.uniform(0.8, 1.0, n),
        rng.uniform(0.0, 0.2, n),
    )  # fmt: skip
    oos = OosScores(
        np.zeros(200, bool), rng.uniform(0.3, 1.0, 200), rng.uniform(0.8, 1.0, 200),
        rng.uniform(0.15, 0.5, 200),
    )  # fmt: skip
    choice = choose_thresholds(in_scope, oos, max_false_rejection=0.02)
    assert choice.min_confidence == 0.0 and choice.max_oos_prob < 1.0
    assert choice.val_false_rejection <= 0.02
    assert choice.val_oos_recall is not None and choice.val_oos_recall > 0.8


KEYWORDS = {
    "cancel_order": ["cancel", "取消", "stop"],
    "get_refund": ["refund", "退款", "money back"],
    "track_order": ["where", "物流", "tracking"],
    "place_order": ["buy", "下单", "purchase"],
    "recover_password": ["password", "密码", "login"],
}


def _worded_dataset(
    rng: np.random.Generator, n_per: int
) -> tuple[np.ndarray, list[str], list[str]]:
    """Embeddings that barely separate the intents (large spread) and texts whose wording does:
    the situation the char n-gram head is for."""
    fillers = ["pls", "hi", "亲", "asap", "thanks", "急", "now", "help"]
    xs, labels, texts = [], [], []
    for label in INTENTS:
        centre = _unit(rng.normal(size=EMBED_DIM))
        xs.append(_sample(centre, n_per, rng, spread=40.0))
        for _ in range(n_per):
            words = [str(rng.choice(KEYWORDS[label])), str(rng.choice(fillers))]
            texts.append(" ".join(rng.permutation(words)))
            labels.append(label)
    order = rng.permutation(len(labels))
    return np.concatenate(xs)[order], [labels[i] for i in order], [texts[i] for i in order]


def test_the_ngram_head_adds_what_the_wording_says(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x, labels, texts = _worded_dataset(rng, 80)
    tr, va, te = slice(0, 240), slice(240, 320), slice(320, None)
    plain, _ = train_intent_model(x[tr], labels[tr], x[va], labels[va])
    mixed, metrics = train_intent_model(
        x[tr], labels[tr], x[va], labels[va], texts_train=texts[tr], texts_val=texts[va]
    )
    assert plain.ngram is None and mixed.ngram is not None
    assert 0.5 <= mixed.embedding_weight < 1.0
    assert metrics["embedding_weight"] == mixed.embedding_weight
    truth = labels[te]
    acc_plain = np.mean([p == t for p, t in zip(plain.predict_labels(x[te]), truth, strict=True)])
    acc_mixed = np.mean(
        [p == t for p, t in zip(mixed.predict_labels(x[te], texts[te]), truth, strict=True)]
    )
    assert acc_mixed > acc_plain + 0.2, (acc_plain, acc_mixed)
    with pytest.raises(ValueError, match="also reads the text"):
        mixed.predict(x[te])
    mixed.save(tmp_path)
    again = IntentModel.load(tmp_path)
    assert again.ngram is not None and again.embedding_weight == mixed.embedding_weight
    a, b = mixed.predict(x[te], texts[te]), again.predict(x[te], texts[te])
    assert [p.intent for p in a] == [p.intent for p in b]
    np.testing.assert_allclose([p.confidence for p in a], [p.confidence for p in b], atol=1e-5)


def test_tuned_layers_replace_the_dense_head_and_round_trip(tmp_path: Path) -> None:
    from services.models.finetune import TunedLayers

    rng = np.random.default_rng(3)
    hidden = 16
    labels = [INTENTS[i % 3] for i in range(240)]
    states, pooled = token_states(rng, labels, hidden)
    start = random_tune_start(rng, hidden)
    tr, va = slice(0, 180), slice(180, None)
    config = IntentTrainConfig(fine_tune_epochs=6, fine_tune_lr=3e-3, ngram=False)
    model, metrics = train_intent_model(
        pooled[tr], labels[tr], pooled[va], labels[va], config,
        states_train=states[tr], states_val=states[va], tune_start=start,
    )  # fmt: skip
    assert model.head is None and isinstance(model.tuned, TunedLayers)
    assert model.states_layer == 5
    assert len(metrics["fine_tune_history"]) >= 2
    assert metrics["accuracy"] > 0.8, metrics["accuracy"]
    with pytest.raises(ValueError, match="token states after layer 5"):
        model.predict(pooled[va])
    model.save(tmp_path)
    again = IntentModel.load(tmp_path)
    assert again.states_layer == 5 and again.head is None
    a = model.predict(pooled[va], states=states[va])
    b = again.predict(pooled[va], states=states[va])
    assert [p.intent for p in a] == [p.intent for p in b]
    np.testing.assert_allclose([p.confidence for p in a], [p.confidence for p in b], atol=1e-5)
    # what nlu loads: the onnxruntime graph only, same predictions, cannot be saved again
    serving = IntentModel.load(tmp_path, serving=True)
    c = serving.predict(pooled[va], states=states[va])
    assert [p.intent for p in c] == [p.intent for p in a]
    with pytest.raises(ValueError, match="serving"):
        serving.save(tmp_path / "again")
    # without fine-tuning epochs the same call trains the frozen-encoder dense head
    frozen, _ = train_intent_model(
        pooled[tr], labels[tr], pooled[va], labels[va],
        IntentTrainConfig(fine_tune_epochs=0, ngram=False),
        states_train=states[tr], states_val=states[va], tune_start=start,
    )  # fmt: skip
    assert frozen.tuned is None and frozen.head is not None and frozen.states_layer is None
