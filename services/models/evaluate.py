"""Evaluating a head on labelled data: per-label table, confusion matrix PNG, summary JSON.

Sentiment on a binary data set (only negative / positive rows) is scored as negative vs not
negative, since a three-way model's "neutral" is not an error on a "positive" row there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.models.datasets import OUT_OF_SCOPE, LabelledData
from services.models.heads import classification_metrics
from services.models.intent import IntentModel, oos_metrics
from services.models.openings import reread_openings
from services.models.sentiment import SentimentModel, negative_vs_not


@dataclass
class LabelScores:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class EvalReport:
    kind: str
    labels: list[str]  # axis order of the confusion matrix
    per_label: list[LabelScores]
    confusion: np.ndarray  # [true, predicted] counts
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _per_label(true: list[str], predicted: list[str], labels: list[str]) -> list[LabelScores]:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(true, predicted, labels=labels, zero_division=0)
    return [
        LabelScores(label, float(p[i]), float(r[i]), float(f[i]), int(s[i]))
        for i, label in enumerate(labels)
    ]


def _confusion(true: list[str], predicted: list[str], labels: list[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(true, predicted, strict=True):
        matrix[index[t], index[p]] += 1
    return matrix


def build_report(
    kind: str, true: list[str], predicted: list[str], extra: dict[str, Any] | None = None
) -> EvalReport:
    labels = sorted(set(true) | set(predicted))
    if OUT_OF_SCOPE in labels:  # last, so the matrix reads in-scope first
        labels = [label for label in labels if label != OUT_OF_SCOPE] + [OUT_OF_SCOPE]
    summary = classification_metrics(true, predicted)
    summary.update(extra or {})
    return EvalReport(
        kind=kind,
        labels=labels,
        per_label=_per_label(true, predicted, labels),
        confusion=_confusion(true, predicted, labels),
        summary=summary,
    )


def evaluate_intent(
    model: IntentModel,
    data: LabelledData,
    embeddings: np.ndarray,
    states: Sequence[np.ndarray] | None = None,
    reread: Callable[[list[str]], Sequence[Any]] | None = None,
) -> EvalReport:
    """``states``: the token states ``model.states_layer`` names, when it has tuned layers.
    ``reread``: reads texts again, so that greetings in front of a request are read as the nlu
    stage reads them (services/models/openings.py)."""
    first = model.predict(embeddings, data.texts, states)
    predictions = reread_openings(data.texts, first, reread) if reread is not None else first
    predicted = [p.intent for p in predictions]
    report = build_report("intent", data.labels, predicted, oos_metrics(data.labels, predicted))
    in_scope = [i for i, label in enumerate(data.labels) if label != OUT_OF_SCOPE]
    if in_scope:
        # How good the classifier is when the OOS gate is left out (helps tell the two apart).
        top1 = [predictions[i].ranking[0][0] == data.labels[i] for i in in_scope]
        top3 = [any(r[0] == data.labels[i] for r in predictions[i].ranking) for i in in_scope]
        report.summary["in_scope_top1"] = float(np.mean(top1))
        report.summary["in_scope_top3"] = float(np.mean(top3))
    changed = sum(1 for a, b in zip(first, predictions, strict=True) if a is not b)
    if changed:
        report.notes.append(f"{changed} messages read again without their opening greeting")
    unknown = sorted(set(data.labels) - set(model.labels) - {OUT_OF_SCOPE})
    if unknown:
        report.notes.append(
            f"labels the model does not know (always wrong): {', '.join(unknown[:10])}"
        )
    return report


def evaluate_sentiment(
    model: SentimentModel,
    data: LabelledData,
    embeddings: np.ndarray,
    states: list[np.ndarray] | None = None,
) -> EvalReport:
    """``states``: the token states after ``model.states_layer`` layers, for tuned layers."""
    predicted = [p.label for p in model.predict(embeddings, data.texts, states)]
    binary = set(data.labels) <= {"negative", "positive"}
    if binary:
        report = build_report(
            "sentiment",
            negative_vs_not(data.labels),
            negative_vs_not(predicted),
            {"scored_as": "negative_vs_not"},
        )
        report.notes.append("binary data: scored as negative vs not negative")
        return report
    extra = {
        "scored_as": "three_way",
        "negative_vs_not_accuracy": classification_metrics(
            negative_vs_not(data.labels), negative_vs_not(predicted)
        )["accuracy"],
    }
    return build_report("sentiment", data.labels, predicted, extra)


def format_table(report: EvalReport) -> str:
    width = max([len("label"), *(len(s.label) for s in report.per_label)])
    lines = [f"{'label':<{width}}  precision  recall     f1  support"]
    for s in report.per_label:
        lines.append(
            f"{s.label:<{width}}  {s.precision:9.3f}  {s.recall:6.3f}  {s.f1:5.3f}  {s.support:7d}"
        )
    lines.append(
        f"{'overall':<{width}}  accuracy {report.summary['accuracy']:.3f}  "
        f"macro-F1 {report.summary['macro_f1']:.3f}  n {report.summary['n']}"
    )
    return "\n".join(lines)


def save_confusion_png(report: EvalReport, path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (counts in the cells when there is room)."""
    import matplotlib

    matplotlib.use("Agg")  # no display in CI or in pods
    import matplotlib.pyplot as plt

    n = len(report.labels)
    size = max(4.0, min(24.0, 0.38 * n + 2.5))
    fig, ax = plt.subplots(figsize=(size, size))
    counts = report.confusion
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), report.labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), report.labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = f"accuracy {report.summary['accuracy']:.3f}"
    ax.set_title(f"{title}\n{accuracy}" if title else f"{report.kind}: {accuracy}", fontsize=9)
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    colour = "white" if shares[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=6, color=colour
                    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
