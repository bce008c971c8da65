"""sentiment's per-batch logic: reuse nlu's embedding or token states when they came from the
same encoder (one encoder pass per message serves both stages)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kefu.v1.events_pb2 import Envelope


def carried_embedding(env: Envelope, encoder_version: str, dim: int) -> np.ndarray | None:
    """nlu's float16 embedding, if it is from the encoder this stage would use."""
    data = env.nlu.embedding
    if not data or env.nlu.encoder_version != encoder_version or len(data) != 2 * dim:
        return None
    return np.frombuffer(data, dtype="<f2").astype(np.float32)


def embeddings_for(
    envs: Sequence[Envelope], texts: Sequence[str], encoder: Any, encoder_version: str
) -> tuple[np.ndarray, int]:
    """Embeddings for the batch (``texts``: what the model reads of each envelope); returns
    them and how many needed a fresh encoder pass."""
    dim = int(encoder.dim)
    rows: list[np.ndarray | None] = [carried_embedding(e, encoder_version, dim) for e in envs]
    missing = [i for i, r in enumerate(rows) if r is None]
    if missing:
        fresh = encoder.embed([texts[i] for i in missing], prefix="query: ")
        for j, i in enumerate(missing):
            rows[i] = fresh[j]
    return np.vstack([r for r in rows if r is not None]).astype(np.float32), len(missing)


def carried_states(env: Envelope, encoder_version: str, layer: int, dim: int) -> np.ndarray | None:
    """nlu's float16 token states [tokens, dim], if they are from this encoder and layer (a
    view of the message's bytes: the tuned layers' batching copies them into float32 once)."""
    data = env.nlu.states
    if (
        not data
        or env.nlu.encoder_version != encoder_version
        or env.nlu.states_layer != layer
        or len(data) % (2 * dim)
    ):
        return None
    return np.frombuffer(data, dtype="<f2").reshape(-1, dim)


def states_for(
    envs: Sequence[Envelope],
    texts: Sequence[str],
    encoder: Any,
    encoder_version: str,
    layer: int,
    dim: int,
) -> tuple[list[np.ndarray], int]:
    """Token states after ``layer`` layers for the batch (carried, or from one encoder pass for
    the rest); returns them and how many needed that pass."""
    rows = [carried_states(e, encoder_version, layer, dim) for e in envs]
    missing = [i for i, r in enumerate(rows) if r is None]
    if missing:
        _, fresh = encoder.embed_with_states([texts[i] for i in missing], layer, prefix="query: ")
        for j, i in enumerate(missing):
            rows[i] = fresh[j]
    return [r for r in rows if r is not None], len(missing)


def fill_sentiment(env: Envelope, prediction: Any, model_version: str) -> None:
    section = env.sentiment
    section.label = prediction.label
    for label, score in sorted(prediction.scores.items()):
        section.scores.add(label=label, score=float(score))
    section.escalate = bool(prediction.escalate)
    section.escalation_reason = prediction.escalation_reason
    section.model_version = model_version
    # Token states served sentiment only; downstream stages and analysts need not carry them.
    env.nlu.ClearField("states")
    env.nlu.ClearField("states_layer")
    # The embedding stays on: reply's FAQ search reuses it (reply clears it before sending).
    # Dropping it here made reply run the encoder again for every turn (measured with py-spy:
    # ~30% of reply's busy samples in FaqIndex.embed_query).
