"""Intent head: calibrated intent probabilities, top-3 ranking and out-of-scope detection.

A message is out of scope when any of these signals says so:

1. the classifier's own ``out_of_scope`` class wins (when the training data has such rows), or
   its calibrated probability reaches ``max_oos_prob``;
2. without an ``out_of_scope`` class: the calibrated probability of the best in-scope intent is
   below ``min_confidence``;
3. its cosine similarity to the nearest in-scope training example is below ``min_similarity``
   (a message unlike anything the shop's customers were seen to say).

With an ``out_of_scope`` class, a low best in-scope probability is not used: it mostly means the
message sits between two related intents (check_invoice / get_invoice), which the reply stage
answers by offering both, not by saying it cannot help. Measured on Bitext dev + CLINC
out-of-scope with the default heads: the in-scope-confidence rule rejected 13.7% of in-scope
messages for +2.5 points of out-of-scope recall; the out-of-scope probability rejects 4%.

The classifier alone is over-confident on unseen topics (softmax has to put the mass somewhere),
and similarity alone misses in-domain but unsupported requests; together they catch both.
Probabilities are temperature-scaled on the validation split, and the two thresholds are chosen
there too (see ``choose_thresholds``), so "confidence 0.8" means right about 80% of the time.

The probabilities mix two heads: logistic regression on the sentence embedding, and one on char
n-gram TF-IDF of the text (exact wording, typos, Chinese without segmentation), with the share of
each chosen on validation. Measured on Bitext dev with heads trained on ``data/intent`` only
(in-scope top-1): embedding head alone 0.816, mixed 0.851, mixed with typo variants in the
training data (services/models/augment.py) 0.874.

The encoder side is, by default, the encoder's top four layers fine-tuned for intent (in numpy:
services/models/finetune.py) on the token states the encoder exposes below them, then mean
pooling and a linear layer; ``fine_tune_epochs=0`` (or an encoder without those states) trains
logistic regression on the frozen sentence embedding instead. The services still get the frozen
embedding from the same encoder pass (sentiment, FAQ search, the similarity signal); the tuned
layers cost nlu four more layers (int8 weights, onnxruntime) on the states of its own batch.

Files of a version: ``intent.npz`` (dense head or tuned layers, nearest-neighbour bank, idf) +
``intent.json`` (+ ``intent_ngrams.json``, and ``intent_layers.onnx`` for tuned layers).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.models.datasets import OUT_OF_SCOPE
from services.models.finetune import TunedLayers, TuneStart, fine_tune_if_possible
from services.models.heads import (
    DenseHead,
    NgramHead,
    best_mix_weight,
    classification_metrics,
    expected_calibration_error,
    fit_dense_head,
    fit_temperature,
    save_arrays,
    softmax,
)

MODEL_FILE = "intent.npz"
LAYERS_GRAPH_FILE = "intent_layers.onnx"  # the tuned layers as onnxruntime runs them
CONFIG_FILE = "intent.json"
NGRAM_FILE = "intent_ngrams.json"
TOP_K = 3


@dataclass
class IntentPrediction:
    intent: str  # the best in-scope intent, or "out_of_scope"
    confidence: float  # calibrated probability that ``intent`` is right
    ranking: list[tuple[str, float]]  # best in-scope intents with calibrated probabilities
    out_of_scope: bool
    similarity: float = 0.0  # cosine to the nearest in-scope example (0.0: the rule skips it)


@dataclass
class OosScores:
    """The per-message signals the out-of-scope rule looks at."""

    oos_class: np.ndarray  # bool: the out_of_scope class has the highest probability
    top_prob: np.ndarray  # calibrated probability of the best in-scope intent
    similarity: np.ndarray  # cosine to the nearest in-scope training example
    oos_prob: np.ndarray | None = None  # calibrated probability of the out_of_scope class


@dataclass
class IntentModel:
    labels: list[str]  # class order of the head's output
    head: DenseHead | None  # on the sentence embedding; None when ``tuned`` replaces it
    temperature: float
    # [m, 384] in-scope training embeddings for the similarity signal: float16 on disk, one
    # float32 copy in memory (BLAS needs float32; keeping both cost the nlu process 10 MB)
    bank: np.ndarray
    min_confidence: float = 0.0
    min_similarity: float = 0.0
    max_oos_prob: float = 1.0  # out of scope from this out_of_scope probability (1.0: argmax only)
    meta: dict[str, Any] = field(default_factory=dict)
    ngram: NgramHead | None = None  # None: the embedding head alone
    embedding_weight: float = 1.0  # the embedding head's share in the mix with ``ngram``
    # The encoder's top layers fine-tuned for intent, fed the token states after
    # ``tuned_from_layer`` layers (services/models/finetune.py); replaces ``head``.
    tuned: TunedLayers | None = None
    tuned_from_layer: int = 0

    def __post_init__(self) -> None:
        self._oos_index = self.labels.index(OUT_OF_SCOPE) if OUT_OF_SCOPE in self.labels else -1
        self._in_scope = np.array(
            [i for i, label in enumerate(self.labels) if label != OUT_OF_SCOPE], dtype=np.int64
        )
        self.bank = np.asarray(self.bank, dtype=np.float32)
        if (self.head is None) == (self.tuned is None):
            raise ValueError("an intent model has exactly one of a dense head and tuned layers")

    @property
    def states_layer(self) -> int | None:
        """The encoder layer whose token states ``predict`` needs (None: embeddings suffice)."""
        return self.tuned_from_layer if self.tuned is not None else None

    def embedding_probabilities(
        self, embeddings: np.ndarray, states: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """Calibrated probabilities of the encoder side alone (before the n-gram mix)."""
        x = _as_matrix(embeddings)
        if self.tuned is not None:
            if states is None or len(states) != len(x):
                raise ValueError(
                    "this intent model fine-tuned the encoder's top layers: pass the token "
                    f"states after layer {self.tuned_from_layer}, one per embedding row (got "
                    f"{len(x)} rows, {'no' if states is None else len(states)} states)"
                )
            logits = self.tuned.logits_per_text(states)
        else:
            assert self.head is not None  # __post_init__ guarantees one of the two
            logits = self.head.logits(x)
        return softmax(logits / self.temperature)

    @property
    def has_oos_class(self) -> bool:
        return self._oos_index >= 0

    def probabilities(
        self,
        embeddings: np.ndarray,
        texts: Sequence[str] | None = None,
        states: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Calibrated class probabilities, [n, len(labels)]."""
        x = _as_matrix(embeddings)
        probs = self.embedding_probabilities(x, states)
        if self.ngram is None:
            return probs
        if texts is None or len(texts) != len(x):
            raise ValueError(
                "this intent model also reads the text: pass one text per embedding row "
                f"(got {len(x)} rows, {'no' if texts is None else len(texts)} texts)"
            )
        p_ngram = self.ngram.probabilities(texts)
        mixed: np.ndarray = self.embedding_weight * probs + (1 - self.embedding_weight) * p_ngram
        return mixed

    def similarity(self, embeddings: np.ndarray, chunk: int = 512) -> np.ndarray:
        x = _as_matrix(embeddings)
        out = np.empty(len(x), dtype=np.float32)
        for start in range(0, len(x), chunk):  # bounds the [chunk, m] similarity matrix
            out[start : start + chunk] = (x[start : start + chunk] @ self.bank.T).max(axis=1)
        return out

    def oos_scores(
        self,
        embeddings: np.ndarray,
        probs: np.ndarray,
        *,
        with_similarity: bool = True,
    ) -> OosScores:
        """The signals for each row from its probabilities; ``with_similarity=False`` skips the
        nearest-neighbour search (zeros) when the rule does not use it: it was ~1/3 of nlu's CPU
        per message."""
        in_scope = probs[:, self._in_scope]
        oos_class = (
            probs.argmax(axis=1) == self._oos_index
            if self.has_oos_class
            else np.zeros(len(probs), dtype=bool)
        )
        oos_prob = probs[:, self._oos_index] if self.has_oos_class else None
        similarity = (
            self.similarity(embeddings)
            if with_similarity
            else np.zeros(len(probs), dtype=np.float32)
        )
        return OosScores(oos_class, in_scope.max(axis=1), similarity, oos_prob)

    def is_out_of_scope(self, scores: OosScores) -> np.ndarray:
        return apply_oos_rule(scores, self.min_confidence, self.min_similarity, self.max_oos_prob)

    def predict(
        self,
        embeddings: np.ndarray,
        texts: Sequence[str] | None = None,
        states: Sequence[np.ndarray] | None = None,
    ) -> list[IntentPrediction]:
        """``texts`` when the model has an n-gram head, ``states`` (see ``states_layer``) when
        it has tuned layers."""
        x = _as_matrix(embeddings)
        if len(x) == 0:
            return []
        probs = self.probabilities(x, texts, states)
        scores = self.oos_scores(x, probs, with_similarity=self.min_similarity > 0)
        oos = self.is_out_of_scope(scores)
        in_scope = probs[:, self._in_scope]
        order = np.argsort(-in_scope, axis=1)[:, :TOP_K]
        results: list[IntentPrediction] = []
        for i in range(len(x)):
            ranking = [
                (self.labels[int(self._in_scope[j])], float(in_scope[i, j])) for j in order[i]
            ]
            if oos[i]:
                p_oos = float(probs[i, self._oos_index]) if self.has_oos_class else 0.0
                confidence = max(p_oos, 1.0 - ranking[0][1])
                results.append(
                    IntentPrediction(
                        OUT_OF_SCOPE, confidence, ranking, True, float(scores.similarity[i])
                    )
                )
            else:
                results.append(
                    IntentPrediction(
                        ranking[0][0], ranking[0][1], ranking, False, float(scores.similarity[i])
                    )
                )
        return results

    def predict_labels(
        self,
        embeddings: np.ndarray,
        texts: Sequence[str] | None = None,
        states: Sequence[np.ndarray] | None = None,
    ) -> list[str]:
        return [p.intent for p in self.predict(embeddings, texts, states)]

    def save(self, directory: Path) -> None:
        if self.tuned is not None and not self.tuned.layers:
            raise ValueError("a model loaded with serving=True cannot be saved: load it again")
        directory.mkdir(parents=True, exist_ok=True)
        arrays = (
            self.head.to_arrays("head_")
            if self.head is not None
            else self.tuned.to_arrays("tuned_")  # type: ignore[union-attr]
        )
        arrays["bank"] = self.bank.astype(np.float16)
        if self.ngram is not None:
            self.ngram.save(arrays, directory / NGRAM_FILE)
        save_arrays(directory / MODEL_FILE, arrays)
        if self.tuned is not None:
            self.tuned.save_graph(directory / LAYERS_GRAPH_FILE)
        config = {
            "labels": self.labels,
            "temperature": self.temperature,
            "min_confidence": self.min_confidence,
            "min_similarity": self.min_similarity,
            "max_oos_prob": self.max_oos_prob,
            "has_ngram_head": self.ngram is not None,
            "ngram_temperature": self.ngram.temperature if self.ngram is not None else 1.0,
            "embedding_weight": self.embedding_weight,
            "tuned_from_layer": self.tuned_from_layer if self.tuned is not None else None,
            "meta": self.meta,
        }
        (directory / CONFIG_FILE).write_text(
            json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(cls, directory: Path, *, serving: bool = False) -> IntentModel:
        """``serving``: tuned layers only as their onnxruntime graph (the numpy copies, ~28 MB
        for four layers, are what training and saving need, not a service)."""
        config_path, model_path = directory / CONFIG_FILE, directory / MODEL_FILE
        if not config_path.is_file() or not model_path.is_file():
            raise FileNotFoundError(
                f"{directory} is not an intent model (needs {CONFIG_FILE} and {MODEL_FILE}); "
                "train one with `kefu train intent --data CSV`"
            )
        config = json.loads(config_path.read_text(encoding="utf-8"))
        ngram: NgramHead | None = None
        head: DenseHead | None = None
        tuned: TunedLayers | None = None
        with np.load(model_path) as arrays:
            if config.get("tuned_from_layer") is not None:
                tuned = TunedLayers.from_arrays(arrays, "tuned_", with_layers=not serving)
                tuned.load_graph(directory / LAYERS_GRAPH_FILE)
            else:
                head = DenseHead.from_arrays(arrays, "head_")
            bank = np.asarray(arrays["bank"])
            if config.get("has_ngram_head"):
                ngram = NgramHead.load(
                    arrays, directory / NGRAM_FILE, float(config.get("ngram_temperature", 1.0))
                )
        n_outputs = head.n_classes if head is not None else len(tuned.head_b)  # type: ignore[union-attr]
        if n_outputs != len(config["labels"]):
            raise ValueError(
                f"{directory}: head has {n_outputs} outputs for {len(config['labels'])} labels"
            )
        return cls(
            labels=list(config["labels"]),
            head=head,
            temperature=float(config["temperature"]),
            bank=bank,
            min_confidence=float(config["min_confidence"]),
            min_similarity=float(config["min_similarity"]),
            max_oos_prob=float(config.get("max_oos_prob", 1.0)),
            meta=dict(config.get("meta", {})),
            ngram=ngram,
            embedding_weight=float(config.get("embedding_weight", 1.0)),
            tuned=tuned,
            tuned_from_layer=int(config.get("tuned_from_layer") or 0),
        )


def _as_matrix(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [n, dim], got shape {x.shape}")
    return x


def apply_oos_rule(
    scores: OosScores, min_confidence: float, min_similarity: float, max_oos_prob: float = 1.0
) -> np.ndarray:
    result: np.ndarray = (
        scores.oos_class | (scores.top_prob < min_confidence) | (scores.similarity < min_similarity)
    )
    if scores.oos_prob is not None and max_oos_prob < 1.0:
        result = result | (scores.oos_prob >= max_oos_prob)
    return result


@dataclass
class ThresholdChoice:
    min_confidence: float
    min_similarity: float
    val_false_rejection: float  # in-scope validation rows called out of scope
    val_oos_recall: float | None  # None when the validation split has no out_of_scope rows
    max_oos_prob: float = 1.0


def choose_thresholds(
    in_scope: OosScores,
    oos: OosScores | None,
    *,
    max_false_rejection: float = 0.03,
) -> ThresholdChoice:
    """Pick the thresholds on validation rows.

    With out-of-scope rows: the combination with the highest out-of-scope recall whose in-scope
    false rejection stays within ``max_false_rejection`` (ties: the lower false rejection); the
    first signal is the out_of_scope probability when the model has that class, else the best
    in-scope probability (see the module docstring). Without: spend the budget evenly on the
    in-scope probability and similarity, since recall cannot be measured.
    The budget is below the 5% target on purpose: validation rows resemble training rows more
    than live traffic does.
    """
    n_in = len(in_scope.top_prob)
    if n_in == 0:
        return ThresholdChoice(0.0, 0.0, 0.0, None)
    quantiles = np.linspace(0.0, max_false_rejection, 13)
    if oos is None or len(oos.top_prob) == 0:
        half = max_false_rejection / 2
        t_conf = float(np.quantile(in_scope.top_prob, half))
        t_sim = float(np.quantile(in_scope.similarity, half))
        fr = float(apply_oos_rule(in_scope, t_conf, t_sim).mean())
        return ThresholdChoice(t_conf, t_sim, fr, None)
    # (min_confidence, max_oos_prob) candidates for the first signal
    if in_scope.oos_prob is not None and oos.oos_prob is not None:
        high = np.quantile(in_scope.oos_prob, 1.0 - quantiles)
        first = [(0.0, float(t)) for t in np.unique(np.concatenate([[1.0], high]))]
        # With an out_of_scope class, similarity only guards against text unlike anything seen
        # (0.2% of in-scope validation rows): cosines move with unseen order numbers and
        # wording, and a tighter bound rejected "Where is order 1060434832?" (measured).
        sim_grid = np.array([0.0, float(np.quantile(in_scope.similarity, 0.002))])
    else:
        low = np.quantile(in_scope.top_prob, quantiles)
        first = [(float(t), 1.0) for t in np.unique(np.concatenate([[0.0], low]))]
        sim_grid = np.unique(np.concatenate([[0.0], np.quantile(in_scope.similarity, quantiles)]))
    best: tuple[float, float, float, float, float] | None = None
    for t_conf, t_oos in first:
        for t_sim in sim_grid:
            fr = float(apply_oos_rule(in_scope, t_conf, t_sim, t_oos).mean())
            if fr > max_false_rejection:
                continue
            recall = float(apply_oos_rule(oos, t_conf, t_sim, t_oos).mean())
            key = (recall, -fr, t_conf, float(t_sim), t_oos)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:  # even no threshold rejects too much: the oos class itself is too eager
        fr = float(apply_oos_rule(in_scope, 0.0, 0.0).mean())
        recall = float(apply_oos_rule(oos, 0.0, 0.0).mean())
        return ThresholdChoice(0.0, 0.0, fr, recall)
    recall, neg_fr, t_conf, t_sim, t_oos = best
    return ThresholdChoice(t_conf, t_sim, -neg_fr, recall, t_oos)


@dataclass
class IntentTrainConfig:
    hidden: int = 0  # 0: logistic regression; > 0: one hidden ReLU layer of that width
    c: float = 50.0  # inverse L2 strength of the logistic regression (best of 1, 10, 50)
    alpha: float = 1e-4  # L2 strength of the MLP
    max_false_rejection: float = 0.015
    # Without out_of_scope rows the gate cannot be tuned for recall, and every in-scope message
    # it rejects is a plain error for a taxonomy like the customer's: it only guards against
    # text far from everything seen (measured on Bitext train -> dev: 1.5 % rejected cost 1.4
    # points of accuracy).
    max_false_rejection_without_oos: float = 0.004
    max_bank: int = 30_000
    seed: int = 0
    ngram: bool = True  # add the char n-gram head (when the trainer is given the texts)
    ngram_c: float = 30.0
    ngram_max_features: int = 100_000
    # The validation split resembles the training data more than live traffic, which flatters
    # the n-gram head (it memorises wording); the embedding head keeps at least this share.
    min_embedding_weight: float = 0.5
    # typo variants added per training message (services/models/augment.py); 0: none
    typo_copies: int = 2
    # Fine-tune the encoder's top layers for intent (when the trainer has the token states):
    # at most this many epochs, early-stopped on validation; 0: the frozen-encoder dense head.
    fine_tune_epochs: int = 4
    fine_tune_lr: float = 1e-4


def train_intent_model(
    x_train: np.ndarray,
    labels_train: list[str],
    x_val: np.ndarray,
    labels_val: list[str],
    config: IntentTrainConfig | None = None,
    *,
    texts_train: Sequence[str] | None = None,
    texts_val: Sequence[str] | None = None,
    states_train: Sequence[np.ndarray] | None = None,
    states_val: Sequence[np.ndarray] | None = None,
    tune_start: TuneStart | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[IntentModel, dict[str, Any]]:
    """Fit the heads on the training split; calibrate, mix and pick OOS thresholds on validation.

    The n-gram head is trained when ``config.ngram`` and the texts are given; the encoder's top
    layers are fine-tuned (instead of a dense head on the frozen embedding) when
    ``config.fine_tune_epochs``, the token states and ``tune_start`` are given.
    Returns the model and its validation metrics.
    """
    config = config or IntentTrainConfig()
    labels = sorted(set(labels_train))
    unknown = sorted(set(labels_val) - set(labels))
    if unknown:
        raise ValueError(f"validation labels missing from training: {', '.join(unknown)}")
    index = {label: i for i, label in enumerate(labels)}
    y_train = np.array([index[label] for label in labels_train], dtype=np.int64)
    y_val = np.array([index[label] for label in labels_val], dtype=np.int64)
    head: DenseHead | None = None
    tuned: TunedLayers | None = None
    history: list[dict[str, float]] = []
    tuned_run = fine_tune_if_possible(
        tune_start, states_train, y_train, states_val, y_val, len(labels),
        epochs=config.fine_tune_epochs, lr=config.fine_tune_lr, seed=config.seed,
        log=log, progress=progress,
    )  # fmt: skip
    if tuned_run is not None:
        assert states_val is not None
        tuned, history = tuned_run
        val_logits: np.ndarray | None = tuned.logits_per_text(states_val)
    else:
        head = fit_dense_head(
            x_train, y_train, hidden=config.hidden, c=config.c, alpha=config.alpha, seed=config.seed
        )
        val_logits = head.logits(x_val) if len(y_val) else None
    temperature = fit_temperature(val_logits, y_val) if val_logits is not None else 1.0

    in_scope_rows = np.array([label != OUT_OF_SCOPE for label in labels_train])
    bank = x_train[in_scope_rows]
    if len(bank) > config.max_bank:
        rng = np.random.default_rng(config.seed)
        bank = bank[rng.choice(len(bank), config.max_bank, replace=False)]
    model = IntentModel(
        labels=labels,
        head=head,
        temperature=temperature,
        bank=bank,
        tuned=tuned,
        tuned_from_layer=tune_start.from_layer if tuned is not None and tune_start else 0,
    )
    if config.ngram and texts_train is not None and texts_val is not None:
        p_embedding = model.embedding_probabilities(x_val, states_val) if len(y_val) else None
        _add_ngram_head(
            model, config, list(texts_train), y_train, p_embedding, list(texts_val), y_val
        )

    val_oos = np.array([label == OUT_OF_SCOPE for label in labels_val], dtype=bool)
    probs = model.probabilities(x_val, texts_val, states_val)
    scores = model.oos_scores(x_val, probs)
    choice = choose_thresholds(
        _select(scores, ~val_oos),
        _select(scores, val_oos) if val_oos.any() else None,
        max_false_rejection=(
            config.max_false_rejection if val_oos.any() else config.max_false_rejection_without_oos
        ),
    )
    model.min_confidence = choice.min_confidence
    model.min_similarity = choice.min_similarity
    model.max_oos_prob = choice.max_oos_prob

    predicted = model.predict_labels(x_val, texts_val, states_val)
    metrics = classification_metrics(labels_val, predicted)
    metrics.update(oos_metrics(labels_val, predicted))
    metrics["ece"] = expected_calibration_error(probs, y_val)
    metrics["embedding_weight"] = model.embedding_weight
    metrics["temperature"] = temperature
    metrics["min_confidence"] = choice.min_confidence
    metrics["min_similarity"] = choice.min_similarity
    metrics["max_oos_prob"] = choice.max_oos_prob
    if history:
        metrics["fine_tune_history"] = history
    model.meta = {"config": config.__dict__, "validation": metrics}
    return model, metrics


def _add_ngram_head(
    model: IntentModel,
    config: IntentTrainConfig,
    texts_train: list[str],
    y_train: np.ndarray,
    p_embedding: np.ndarray | None,
    texts_val: list[str],
    y_val: np.ndarray,
) -> None:
    ngram = NgramHead.fit(
        texts_train,
        y_train,
        c=config.ngram_c,
        max_features=config.ngram_max_features,
        seed=config.seed,
    )
    model.ngram = ngram
    if len(y_val) == 0 or p_embedding is None:
        model.embedding_weight = max(0.5, config.min_embedding_weight)
        return
    ngram.calibrate(texts_val, y_val)
    model.embedding_weight = best_mix_weight(
        p_embedding, ngram.probabilities(texts_val), y_val, lowest=config.min_embedding_weight
    )


def _select(scores: OosScores, mask: np.ndarray) -> OosScores:
    oos_prob = scores.oos_prob[mask] if scores.oos_prob is not None else None
    return OosScores(
        scores.oos_class[mask], scores.top_prob[mask], scores.similarity[mask], oos_prob
    )


def oos_metrics(true: list[str], predicted: list[str]) -> dict[str, Any]:
    """Out-of-scope recall (when there are out_of_scope rows) and the share of in-scope rows
    wrongly called out of scope."""
    t = np.array(true)
    p = np.array(predicted)
    out: dict[str, Any] = {}
    is_oos = t == OUT_OF_SCOPE
    if is_oos.any():
        out["oos_recall"] = float((p[is_oos] == OUT_OF_SCOPE).mean())
    if (~is_oos).any():
        out["oos_false_rejection"] = float((p[~is_oos] == OUT_OF_SCOPE).mean())
    return out
