"""Sentiment head: escalation cues, the two-head ensemble, saving and loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.models.heads import EMBED_DIM
from services.models.sentiment import (
    MILD_CUE_MIN_NEGATIVE,
    STRONG_CUE_MIN_NEGATIVE,
    SentimentModel,
    SentimentTrainConfig,
    decide_escalation,
    escalation_cues,
    is_cjk,
    negative_vs_not,
    train_sentiment_model,
)
from tests.unit.tuned_fixtures import random_tune_start, token_states


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("再不退款我就打12315投诉你们", "threat"),
        ("I will call my lawyer about this", "threat"),
        ("你们就是骗子", "fraud"),
        ("this shop is a SCAM", "fraud"),
        ("where is my refund!!!", "shouting"),
        ("退款呢！！！", "shouting"),
        ("WHERE IS MY ORDER YOU PEOPLE", "shouting"),
        ("this is the third time I ask", "repeated"),
        ("第三次联系你们了", "repeated"),
        ("什么垃圾东西", "abuse"),
        ("this is absolutely unacceptable", "distress"),
    ],
)
def test_escalation_cues_are_found(text: str, kind: str) -> None:
    assert kind in [k for k, _ in escalation_cues(text)]


@pytest.mark.parametrize(
    "text",
    [
        "where is my order?",
        "谢谢，收到了",
        "I love the UK store",
        "Issue with order ABC123",
        "the suede is nice",
        "please pursue the delivery",
        "my SIM card and the APP show VIP status, why?",
        "还没在意这条短信",
        "？？？",  # punctuation alone: puzzled, not shouting (it summoned an agent at once)
        "!!!!",
    ],
)
def test_calm_messages_have_no_cues(text: str) -> None:
    assert escalation_cues(text) == []


def test_escalation_needs_both_negativity_and_cues() -> None:
    threat = escalation_cues("我要去12315投诉")
    shout = escalation_cues("WHERE IS MY PARCEL")
    assert decide_escalation(STRONG_CUE_MIN_NEGATIVE + 0.01, threat)[0]
    assert not decide_escalation(STRONG_CUE_MIN_NEGATIVE - 0.01, threat)[0]
    assert not decide_escalation(MILD_CUE_MIN_NEGATIVE - 0.01, shout)[0]
    fire, reason = decide_escalation(0.95, shout)
    assert fire and "shouting" in reason and "0.95" in reason
    assert decide_escalation(0.99, []) == (False, "")


def test_waiting_alone_does_not_escalate_with_another_cue_it_does() -> None:
    # "my parcel still hasn't arrived" went to a person at "urgent"
    waiting = escalation_cues("my parcel still hasn't arrived")
    assert [k for k, _ in waiting] == ["waiting"]
    assert decide_escalation(0.99, waiting) == (False, "")
    assert decide_escalation(0.99, escalation_cues("一直没发货"))[0] is False
    fire, reason = decide_escalation(0.9, escalation_cues("still not here, third time I ask!!!"))
    assert fire and "repeated" in reason and "waiting" in reason


def test_two_kinds_of_mild_cue_need_only_some_negativity() -> None:
    # repeating and shouting at once was only apologised to at negative 0.6
    both = escalation_cues("THIS IS THE THIRD TIME I'M ASKING WHERE IS MY ORDER")
    assert {k for k, _ in both} == {"repeated", "shouting"}
    assert decide_escalation(STRONG_CUE_MIN_NEGATIVE + 0.01, both)[0]
    assert not decide_escalation(STRONG_CUE_MIN_NEGATIVE - 0.01, both)[0]
    # one kind, found twice, is still one cue
    shout = escalation_cues("WHERE IS MY PARCEL!!!")
    assert {k for k, _ in shout} == {"shouting"}
    assert not decide_escalation(MILD_CUE_MIN_NEGATIVE - 0.01, shout)[0]


def test_script_detection_for_mixing_weights() -> None:
    assert is_cjk("质量很差") and is_cjk("这个order怎么还没到")
    assert not is_cjk("terrible product") and not is_cjk("cancel order 谢谢")
    assert not is_cjk("!!!")


def test_negative_vs_not() -> None:
    assert negative_vs_not(["negative", "neutral", "positive"]) == [
        "negative",
        "not_negative",
        "not_negative",
    ]


NEG = ["太差了", "质量很差", "垃圾东西", "terrible product", "very bad quality", "差评 不推荐"]
NEU = ["还没收到", "请问什么时候发货", "what is the size", "我想问一下", "ok noted", "在吗"]
POS = ["非常好", "质量很好 推荐", "love it", "great quality", "很满意 好评", "物流很快 很好"]


def _synthetic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str], list[str]]:
    centres = {label: rng.normal(size=EMBED_DIM) for label in ("negative", "neutral", "positive")}
    words = {"negative": NEG, "neutral": NEU, "positive": POS}
    x, texts, labels = [], [], []
    for label, centre in centres.items():
        for _ in range(n):
            v = centre + 1.2 * rng.normal(size=EMBED_DIM)
            x.append(v / np.linalg.norm(v))
            texts.append(str(rng.choice(words[label])) + str(rng.integers(100)))
            labels.append(label)
    return np.array(x, dtype=np.float32), texts, labels


@pytest.fixture(scope="module")
def trained() -> tuple[SentimentModel, dict[str, float]]:
    rng = np.random.default_rng(0)
    x, texts, labels = _synthetic(rng, 80)
    order = rng.permutation(len(labels))
    x, texts, labels = x[order], [texts[i] for i in order], [labels[i] for i in order]
    cut = int(0.75 * len(labels))
    config = SentimentTrainConfig(hidden=16, ngram_max_features=5000)
    return train_sentiment_model(
        x[:cut], texts[:cut], labels[:cut], x[cut:], texts[cut:], labels[cut:], config
    )


def test_ensemble_learns_and_mixes(trained) -> None:  # type: ignore[no-untyped-def]
    model, metrics = trained
    assert model.labels == ["negative", "neutral", "positive"]
    assert metrics["accuracy"] > 0.9
    assert 0.0 <= model.embedding_weight <= 1.0
    assert 0.0 <= model.embedding_weight_latin <= 1.0
    assert model.ngram is not None


def test_fixed_mixing_weights_replace_the_validation_choice() -> None:
    rng = np.random.default_rng(0)
    x, texts, labels = _synthetic(rng, 40)
    config = SentimentTrainConfig(
        hidden=0, ngram_max_features=2000, mix_weight_cjk=0.5, mix_weight_latin=0.7
    )
    model, metrics = train_sentiment_model(
        x[::2], texts[::2], labels[::2], x[1::2], texts[1::2], labels[1::2], config
    )
    assert (model.embedding_weight, model.embedding_weight_latin) == (0.5, 0.7)
    assert (metrics["embedding_weight"], metrics["embedding_weight_latin"]) == (0.5, 0.7)
    with pytest.raises(ValueError, match="mix_weight_cjk must be between 0 and 1"):
        SentimentTrainConfig(mix_weight_cjk=1.5)


def test_the_builtin_model_fixes_its_weights_and_customer_training_chooses_them() -> None:
    from services.models.train import BUILTIN_SENTIMENT_CONFIG, DEFAULT_SENTIMENT_CONFIG

    assert BUILTIN_SENTIMENT_CONFIG.mix_weight_cjk == 0.5
    assert BUILTIN_SENTIMENT_CONFIG.mix_weight_latin == 0.7
    assert DEFAULT_SENTIMENT_CONFIG.mix_weight_cjk is None
    assert DEFAULT_SENTIMENT_CONFIG.mix_weight_latin is None


def test_predictions_have_scores_and_escalation(trained) -> None:  # type: ignore[no-untyped-def]
    model, _ = trained
    rng = np.random.default_rng(1)
    x, _, _ = _synthetic(rng, 1)
    texts = ["太差了!!! 我要打12315", "请问什么时候发货", "非常好"]
    predictions = model.predict(x, texts)
    assert [p.label for p in predictions] == ["negative", "neutral", "positive"]
    for p in predictions:
        assert set(p.scores) == {"negative", "neutral", "positive"}
        assert abs(sum(p.scores.values()) - 1.0) < 1e-5
    assert predictions[0].escalate and "threat" in predictions[0].escalation_reason
    assert not predictions[2].escalate and predictions[2].escalation_reason == ""


def test_round_trip_and_input_checks(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _ = trained
    model.save(tmp_path)
    again = SentimentModel.load(tmp_path)
    x, texts, _ = _synthetic(np.random.default_rng(2), 5)
    np.testing.assert_allclose(
        again.probabilities(x, texts), model.probabilities(x, texts), atol=1e-6
    )
    with pytest.raises(ValueError, match="one embedding row per text"):
        model.predict(x, texts[:-1])
    assert model.predict(x[:0], []) == []
    with pytest.raises(FileNotFoundError, match="kefu train sentiment"):
        SentimentModel.load(tmp_path / "missing")


def test_binary_training_data_gives_a_two_label_model() -> None:
    rng = np.random.default_rng(3)
    x, texts, labels = _synthetic(rng, 40)
    keep = [i for i, label in enumerate(labels) if label != "neutral"]
    x, texts, labels = x[keep], [texts[i] for i in keep], [labels[i] for i in keep]
    model, _ = train_sentiment_model(
        x[::2],
        texts[::2],
        labels[::2],
        x[1::2],
        texts[1::2],
        labels[1::2],
        SentimentTrainConfig(hidden=0, ngram=False),
    )
    assert model.labels == ["negative", "positive"]
    prediction = model.predict(x[:1], texts[:1])[0]
    assert prediction.scores["neutral"] == 0.0
    with pytest.raises(ValueError, match="sentiment needs"):
        train_sentiment_model(x, texts, ["angry"] * len(texts), x, texts, labels)


def test_tuned_layers_replace_the_dense_head_and_round_trip(tmp_path: Path) -> None:
    from services.models.finetune import TunedLayers

    rng = np.random.default_rng(4)
    labels = [("negative", "neutral", "positive")[i % 3] for i in range(240)]
    states, pooled = token_states(rng, labels, 16)
    start = random_tune_start(rng, 16, from_layer=7)
    texts = [f"{label} {i}" for i, label in enumerate(labels)]
    tr, va = slice(0, 180), slice(180, None)
    config = SentimentTrainConfig(fine_tune_epochs=6, fine_tune_lr=3e-3, fine_tune_max_tokens=6)
    model, metrics = train_sentiment_model(
        pooled[tr], texts[tr], labels[tr], pooled[va], texts[va], labels[va], config,
        states_train=states[tr], states_val=states[va], tune_start=start,
    )  # fmt: skip
    assert model.embedding_head is None and isinstance(model.tuned, TunedLayers)
    assert model.states_layer == 7 and model.ngram is not None
    assert len(metrics["fine_tune_history"]) >= 2
    # the label hides in one token of 4-8 (training sees at most 6): attention finds it
    assert metrics["accuracy"] > 0.8, metrics["accuracy"]
    with pytest.raises(ValueError, match="token states after layer 7"):
        model.predict(pooled[va], texts[va])
    with pytest.raises(ValueError, match="one token-state array per text"):
        model.predict(None, texts[va], states[va][:-1])
    model.save(tmp_path)
    a = model.predict(None, texts[va], states[va])
    # what the sentiment stage loads: the onnxruntime graph only, same predictions
    serving = SentimentModel.load(tmp_path, serving=True)
    assert serving.states_layer == 7 and serving.tuned is not None and not serving.tuned.layers
    b = serving.predict(None, texts[va], states[va])
    assert [p.label for p in a] == [p.label for p in b]
    np.testing.assert_allclose(
        [p.scores["negative"] for p in a], [p.scores["negative"] for p in b], atol=1e-5
    )
    with pytest.raises(ValueError, match="serving"):
        serving.save(tmp_path / "again")
    # without fine-tuning epochs the same call trains the frozen-encoder dense head
    frozen, _ = train_sentiment_model(
        pooled[tr], texts[tr], labels[tr], pooled[va], texts[va], labels[va],
        SentimentTrainConfig(hidden=0, fine_tune_epochs=0, ngram=False),
        states_train=states[tr], states_val=states[va], tune_start=start,
    )  # fmt: skip
    assert frozen.tuned is None and frozen.embedding_head is not None
    assert frozen.states_layer is None
