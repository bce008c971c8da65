"""sentiment's per-batch logic: reuse nlu's embedding when it came from the same encoder."""

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
    envs: Sequence[Envelope], encoder: Any, encoder_version: str
) -> tuple[np.ndarray, int]:
    """Embeddings for the batch; returns them and how many needed a fresh encoder pass."""
    dim = int(encoder.dim)
    rows: list[np.ndarray | None] = [carried_embedding(e, encoder_version, dim) for e in envs]
    missing = [i for i, r in enumerate(rows) if r is None]
    if missing:
        fresh = encoder.embed([envs[i].text for i in missing], prefix="query: ")
        for j, i in enumerate(missing):
            rows[i] = fresh[j]
    return np.vstack([r for r in rows if r is not None]).astype(np.float32), len(missing)


def fill_sentiment(env: Envelope, prediction: Any, model_version: str) -> None:
    section = env.sentiment
    section.label = prediction.label
    for label, score in sorted(prediction.scores.items()):
        section.scores.add(label=label, score=float(score))
    section.escalate = bool(prediction.escalate)
    section.escalation_reason = prediction.escalation_reason
    section.model_version = model_version
    # The embedding stays on: reply's FAQ search reuses it (reply clears it before sending).
    # Dropping it here made reply run the encoder again for every turn (measured with py-spy:
    # ~30% of reply's busy samples in FaqIndex.embed_query).
