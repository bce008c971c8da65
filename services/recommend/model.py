"""Implicit-feedback collaborative filtering for product recommendations.

Training uses the ``implicit`` library (item-item cosine / BM25 neighbours, or ALS); which one and
with which hyper-parameters is chosen by measured HR@10 on a validation split (see
``evaluate.tune``). Serving does not use ``implicit``: the model keeps only item-side parameters
(an item-item similarity matrix or item factors) and every request *folds in* the customer's
current history, so a view or purchase a second ago already changes what they are offered, and
no per-user state has to be trained, stored or kept in sync.

Signals are weighted by kind (purchase > cart > view) and decay exponentially with age. A
customer's own history decays relative to their newest interaction (so what they did last
matters most, however long ago their last visit was); popularity decays relative to the newest
interaction in the training data (so the fallback follows what sells now).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

KINDS = ("view", "cart", "purchase")
# A purchase says much more about taste than a glance at a product page.
DEFAULT_KIND_WEIGHTS: dict[str, float] = {"view": 1.0, "cart": 3.0, "purchase": 6.0}
ALGORITHMS = ("item_cosine", "item_bm25", "als")

ARRAYS_FILE = "arrays.npz"
MODEL_FILE = "model.json"
FORMAT_VERSION = 1
SECONDS_PER_DAY = 86_400.0


class ModelError(ValueError):
    """Training data or a saved model the recommender cannot use; the message says why."""


@dataclass(frozen=True, slots=True)
class Interaction:
    """One behaviour signal: a customer viewed, carted or bought a product at ``at`` (epoch s)."""

    user_id: str
    product_id: str
    kind: str
    at: float
    quantity: int = 1


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one model; ``algorithm`` picks which of the others apply."""

    algorithm: str = "item_cosine"
    neighbours: int = 50  # item-item: neighbours kept per item
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    factors: int = 32  # als
    regularization: float = 1.0
    alpha: float = 10.0
    iterations: int = 15
    half_life_days: float = 90.0  # 0: no time decay
    kind_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_KIND_WEIGHTS))
    seed: int = 7

    def validate(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ModelError(
                f"unknown algorithm {self.algorithm!r}; expected one of {', '.join(ALGORITHMS)}"
            )
        if self.neighbours < 1 or self.factors < 1 or self.iterations < 1:
            raise ModelError("neighbours, factors and iterations must be at least 1")
        if self.half_life_days < 0:
            raise ModelError("half_life_days must be >= 0 (0 disables time decay)")
        missing = [k for k in KINDS if k not in self.kind_weights]
        if missing or any(self.kind_weights[k] <= 0 for k in KINDS):
            raise ModelError(f"kind_weights needs a positive weight for each of {KINDS}")

    def describe(self) -> dict[str, Any]:
        """The parameters that matter for this algorithm (for logs and manifests)."""
        keep = {"algorithm", "half_life_days", "kind_weights"}
        if self.algorithm == "als":
            keep |= {"factors", "regularization", "alpha", "iterations", "seed"}
        else:
            keep |= {"neighbours"}
            if self.algorithm == "item_bm25":
                keep |= {"bm25_k1", "bm25_b"}
        data = asdict(self)
        data["kind_weights"] = dict(self.kind_weights)
        return {k: v for k, v in data.items() if k in keep}


def decay(age_seconds: float, half_life_days: float) -> float:
    """Weight multiplier for a signal ``age_seconds`` old: 1 now, 0.5 after one half-life."""
    if half_life_days <= 0:
        return 1.0
    return 2.0 ** (-max(age_seconds, 0.0) / (half_life_days * SECONDS_PER_DAY))


def history_weights(
    history: Sequence[Interaction], config: TrainConfig
) -> dict[str, tuple[float, str, float]]:
    """Aggregate a customer's history per product: (weight, strongest kind, last time).

    Time decay is relative to the customer's newest signal; the strongest kind (purchase > cart >
    view) decides how a product is talked about in reasons.
    """
    if not history:
        return {}
    newest = max(h.at for h in history)
    rank = {k: i for i, k in enumerate(KINDS)}
    out: dict[str, tuple[float, str, float]] = {}
    for h in history:
        w = config.kind_weights[h.kind] * decay(newest - h.at, config.half_life_days)
        prev = out.get(h.product_id)
        if prev is None:
            out[h.product_id] = (w, h.kind, h.at)
        else:
            kind = h.kind if rank[h.kind] > rank[prev[1]] else prev[1]
            out[h.product_id] = (prev[0] + w, kind, max(prev[2], h.at))
    return out


def user_item_matrix(
    interactions: Iterable[Interaction], config: TrainConfig
) -> tuple[csr_matrix, list[str], list[str]]:
    """Users x items matrix of decayed, kind-weighted signal; ids in first-seen order."""
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for it in interactions:
        by_user[it.user_id].append(it)
    item_index: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    user_ids = list(by_user)
    for u, uid in enumerate(user_ids):
        for pid, (w, _, _) in history_weights(by_user[uid], config).items():
            rows.append(u)
            cols.append(item_index.setdefault(pid, len(item_index)))
            vals.append(w)
    item_ids = list(item_index)
    matrix = csr_matrix(
        (np.asarray(vals, dtype=np.float32), (rows, cols)),
        shape=(len(user_ids), len(item_ids)),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    return matrix, user_ids, item_ids


def popularity(
    interactions: Sequence[Interaction], item_ids: Sequence[str], config: TrainConfig
) -> np.ndarray:
    """Kind-weighted signal per item, decayed relative to the newest interaction in the data."""
    index = {pid: i for i, pid in enumerate(item_ids)}
    newest = max(it.at for it in interactions)
    pop = np.zeros(len(item_ids), dtype=np.float64)
    for it in interactions:
        i = index.get(it.product_id)
        if i is not None:
            pop[i] += config.kind_weights[it.kind] * decay(newest - it.at, config.half_life_days)
    return pop.astype(np.float32)


@dataclass
class RecModel:
    """Item-side parameters of a trained model plus what it was trained on."""

    config: TrainConfig
    item_ids: list[str]
    popularity: np.ndarray  # float32 [n_items]
    similarity: csr_matrix | None = None  # item-item algorithms: [n_items, n_items]
    item_factors: np.ndarray | None = None  # als: [n_items, factors]
    info: dict[str, Any] = field(default_factory=dict)
    _index: dict[str, int] = field(default_factory=dict, repr=False)
    _y: np.ndarray | None = field(default=None, repr=False)  # float64 item factors
    _yty: np.ndarray | None = field(default=None, repr=False)
    _y_unit: np.ndarray | None = field(default=None, repr=False)  # rows scaled to length 1

    def __post_init__(self) -> None:
        self._index = {pid: i for i, pid in enumerate(self.item_ids)}
        if self.item_factors is not None:
            self._y = self.item_factors.astype(np.float64)
            self._yty = self._y.T @ self._y
            norms = np.linalg.norm(self._y, axis=1, keepdims=True)
            self._y_unit = self._y / np.maximum(norms, 1e-12)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def index_of(self, product_id: str) -> int | None:
        return self._index.get(product_id)

    def _neighbours(
        self, hist_idx: np.ndarray, hist_w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The similarity rows of the history as flat (history position, item, weighted sim)."""
        sim = self.similarity
        assert sim is not None
        starts, ends = sim.indptr[hist_idx], sim.indptr[hist_idx + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        # Positions of all the rows' entries in sim.data without a Python loop.
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        pos = offsets + np.arange(total)
        rows = np.repeat(np.arange(hist_idx.size), lengths)
        return rows, sim.indices[pos], sim.data[pos] * hist_w[rows]

    def score(self, hist_idx: np.ndarray, hist_w: np.ndarray) -> np.ndarray:
        """Scores of every item for a customer whose history is (item index, weight) pairs."""
        if self.similarity is not None:
            _, items, values = self._neighbours(hist_idx, hist_w)
            scores = np.bincount(items, weights=values, minlength=self.n_items)
            # bincount of nothing (items without neighbours) comes back as integers.
            return scores.astype(np.float64, copy=False)
        assert self._y is not None
        return self._y @ self._fold_in(hist_idx, hist_w)

    def contributions(
        self, hist_idx: np.ndarray, hist_w: np.ndarray, candidates: np.ndarray
    ) -> np.ndarray:
        """[len(candidates), len(history)]: how strongly each history item supports each candidate.

        Item-item: weight x similarity, exactly the terms of the score. ALS: weight x cosine of
        the item factors, i.e. "the candidate is most like this one of yours"; the exact linear
        attribution of a factor model (Hu et al. 2008, section 5) can credit an unrelated item
        because it is coupled through the inverse, which makes for reasons no customer believes.
        """
        if self.similarity is not None:
            rows, items, values = self._neighbours(hist_idx, hist_w)
            out = np.zeros((candidates.size, hist_idx.size))
            slot = {c: k for k, c in enumerate(candidates.tolist())}
            keep = np.isin(items, candidates)
            for r, i, v in zip(
                rows[keep].tolist(), items[keep].tolist(), values[keep].tolist(), strict=True
            ):
                out[slot[i], r] += v
            return out
        assert self._y_unit is not None
        cos = self._y_unit[candidates] @ self._y_unit[hist_idx].T
        return cos * hist_w[None, :]

    def _fold_in_matrix(self, ys: np.ndarray, conf: np.ndarray) -> np.ndarray:
        # Same normal equations as implicit's least squares: confidence = alpha * weight.
        assert self._yty is not None
        reg = self.config.regularization * np.eye(self._yty.shape[0])
        return self._yty + reg + (ys.T * (conf - 1.0)) @ ys

    def _fold_in(self, hist_idx: np.ndarray, hist_w: np.ndarray) -> np.ndarray:
        assert self._y is not None
        ys = self._y[hist_idx]
        conf = self.config.alpha * hist_w
        a = self._fold_in_matrix(ys, conf)
        return np.linalg.solve(a, ys.T @ conf)

    # ---- persistence: plain numpy arrays + JSON, loadable without pickle ----

    def save(self, version_dir: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "item_ids": np.asarray(self.item_ids, dtype=np.str_),
            "popularity": self.popularity.astype(np.float32),
        }
        if self.similarity is not None:
            sim = self.similarity
            arrays |= {
                "sim_indptr": sim.indptr.astype(np.int64),
                "sim_indices": sim.indices.astype(np.int32),
                "sim_data": sim.data.astype(np.float32),
            }
        if self.item_factors is not None:
            arrays["item_factors"] = self.item_factors.astype(np.float32)
        np.savez(version_dir / ARRAYS_FILE, **arrays)  # type: ignore[arg-type]
        meta = {"format": FORMAT_VERSION, "config": self.config.describe(), "info": self.info}
        (version_dir / MODEL_FILE).write_text(
            json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(cls, version_dir: Path) -> RecModel:
        meta_path, arrays_path = version_dir / MODEL_FILE, version_dir / ARRAYS_FILE
        if not meta_path.is_file() or not arrays_path.is_file():
            raise ModelError(
                f"{version_dir} is not a recommend model version (needs {MODEL_FILE} and "
                f"{ARRAYS_FILE}): run `kefu train recommend`"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION:
            raise ModelError(
                f"{version_dir}: model format {meta.get('format')!r}, this code reads "
                f"{FORMAT_VERSION}: retrain with `kefu train recommend`"
            )
        config = TrainConfig(**meta["config"])
        config.validate()
        with np.load(arrays_path, allow_pickle=False) as data:
            item_ids = [str(x) for x in data["item_ids"]]
            n = len(item_ids)
            similarity = None
            if "sim_data" in data:
                similarity = csr_matrix(
                    (data["sim_data"], data["sim_indices"], data["sim_indptr"]), shape=(n, n)
                )
            factors = data.get("item_factors")
            pop = data["popularity"]
        if similarity is None and factors is None:
            raise ModelError(f"{version_dir}: {ARRAYS_FILE} holds neither similarity nor factors")
        return cls(config, item_ids, pop, similarity, factors, dict(meta.get("info", {})))


def train(interactions: Sequence[Interaction], config: TrainConfig) -> RecModel:
    """Fit a model on ``interactions`` with the ``implicit`` library."""
    config.validate()
    if not interactions:
        raise ModelError(
            "no interactions to train on: load behaviour events or orders into MongoDB first "
            "(or pass --data interactions.jsonl)"
        )
    matrix, user_ids, item_ids = user_item_matrix(interactions, config)
    pop = popularity(interactions, item_ids, config)
    info = {
        "n_users": len(user_ids),
        "n_items": len(item_ids),
        "n_interactions": len(interactions),
        "newest_at": max(it.at for it in interactions),
    }
    # Imported here, not at module level: serving never needs implicit. Imported before the
    # thread limit below, which only applies to libraries already loaded.
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize

    # One BLAS/OpenMP thread: the machine is shared and the matrices are small; implicit also
    # warns (rightly) that multithreaded BLAS slows its own parallel loops down.
    with threadpool_limits(1):
        if config.algorithm == "als":
            als = AlternatingLeastSquares(
                factors=config.factors,
                regularization=config.regularization,
                alpha=config.alpha,
                iterations=config.iterations,
                random_state=config.seed,
                num_threads=1,
            )
            als.fit(matrix, show_progress=False)
            factors = np.asarray(als.item_factors, dtype=np.float32)
            return RecModel(config, item_ids, pop, item_factors=factors, info=info)

        # The same weighting as implicit's CosineRecommender / BM25Recommender, converted to CSR
        # here because their fit() hands implicit a COO matrix and it warns about it.
        if config.algorithm == "item_bm25":
            weighted = bm25_weight(matrix.T, K1=config.bm25_k1, B=config.bm25_b).T
        else:
            weighted = normalize(matrix.T).T
        # +1 because each item is its own nearest neighbour (removed below).
        knn = ItemItemRecommender(K=config.neighbours + 1, num_threads=1)
        knn.fit(csr_matrix(weighted, dtype=np.float64), show_progress=False)
    sim = csr_matrix(knn.similarity, dtype=np.float32)
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    sim.sort_indices()
    return RecModel(config, item_ids, pop, similarity=sim, info=info)
