"""Small synthetic inputs for fine-tuned-layer tests (intent and sentiment heads)."""

from __future__ import annotations

import numpy as np

from services.models.finetune import TuneStart
from services.models.onnx_graph import LayerWeights


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def token_states(
    rng: np.random.Generator, labels: list[str], hidden: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-message token states where the label shows in ONE token among noise tokens: the
    mean-pooled vector (what a frozen-encoder head sees) hides it, attention can find it."""
    markers = {label: rng.normal(size=hidden) * 3 for label in sorted(set(labels))}
    states = []
    for label in labels:
        n = int(rng.integers(4, 9))
        tokens = rng.normal(size=(n, hidden))
        tokens[int(rng.integers(0, n))] += markers[label]
        states.append(tokens.astype(np.float32))
    pooled = unit_rows(np.stack([s.mean(axis=0) for s in states]))
    return states, pooled


def random_tune_start(
    rng: np.random.Generator, hidden: int = 16, ffn: int = 32, from_layer: int = 5
) -> TuneStart:
    """One random post-LayerNorm BERT layer to fine-tune, fed the states after ``from_layer``."""

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.normal(size=(rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def zeros(n: int) -> np.ndarray:
        return np.zeros(n, np.float32)

    layer = LayerWeights(
        matrix(hidden, hidden), zeros(hidden), matrix(hidden, hidden), zeros(hidden),
        matrix(hidden, hidden), zeros(hidden), matrix(hidden, hidden), zeros(hidden),
        np.ones(hidden, np.float32), zeros(hidden), matrix(ffn, hidden), zeros(ffn),
        matrix(hidden, ffn), zeros(hidden), np.ones(hidden, np.float32), zeros(hidden),
    )  # fmt: skip
    return TuneStart(layers=[layer], num_heads=2, eps=1e-12, from_layer=from_layer)
