"""MongoDB → recommender: training data, the catalog, a customer's recent history; and the
train-and-publish job behind `kefu train recommend`.

Training data is the `interactions` collection (views, carts, purchases from the platform) plus
the purchases recorded in `orders` (what the order system knows even if the platform never sent a
behaviour event). A purchase that is in both is counted once. Rows that cannot be used are
counted by reason and reported, never silently dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.database import Database

from services.models import registry
from services.recommend.behavior import COLLECTION as INTERACTIONS
from services.recommend.catalog import Catalog
from services.recommend.evaluate import (
    Scores,
    default_grid,
    evaluate_config,
    evaluate_popularity,
    leave_last_out,
    tune,
)
from services.recommend.model import KINDS, Interaction, RecModel, TrainConfig, train
from services.recommend.recommender import Recommender
from services.runtime.mongo import PRODUCT_ID_RE, USER_ID_RE

PRODUCTS = "products"
ORDERS = "orders"
# Orders that never turned into a purchase; orders placed but not paid yet.
NOT_PURCHASED_STATUSES = frozenset({"cancelled", "canceled"})
# Every `kefu seed` and scheduled retrain publishes a recommend version; older ones are only
# rollback points, so a few are kept and the rest deleted on publish.
RECOMMEND_VERSIONS_KEPT = 5
UNPAID_STATUSES = frozenset({"pending"})
SAME_EVENT_WINDOW_S = 7 * 86_400
HISTORY_LIMIT = 50
_HISTORY_PROJECTION = {"_id": 0, "user_id": 1, "product_id": 1, "kind": 1, "quantity": 1, "at": 1}


@dataclass
class TrainingData:
    interactions: list[Interaction]
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows left out

    def describe_skipped(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # pymongo without tz_aware returns naive UTC
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return None


def interaction_from_document(doc: Mapping[str, Any]) -> Interaction | str:
    """An `interactions` document → Interaction, or the reason it cannot be used."""
    user, pid, kind = doc.get("user_id"), doc.get("product_id"), doc.get("kind")
    if not isinstance(user, str) or not USER_ID_RE.match(user):
        return "invalid_user_id"
    if not isinstance(pid, str) or not PRODUCT_ID_RE.match(pid):
        return "invalid_product_id"
    if kind not in KINDS:
        return "invalid_kind"
    at = _epoch(doc.get("at"))
    if at is None:
        return "invalid_at"
    quantity = doc.get("quantity", 1)
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        quantity = 1
    return Interaction(user, pid, str(kind), at, quantity)


def purchases_from_order(doc: Mapping[str, Any]) -> list[Interaction] | str:
    """An `orders` document → one interaction per line item, or the reason it cannot be used.

    Placed-but-unpaid orders count as carts (intent, not a purchase); cancelled ones not at all.
    """
    status = doc.get("status")
    if status in NOT_PURCHASED_STATUSES:
        return "cancelled_order"
    kind = "cart" if status in UNPAID_STATUSES else "purchase"
    user = doc.get("user_id")
    if not isinstance(user, str) or not USER_ID_RE.match(user):
        return "invalid_user_id"
    at = _epoch(doc.get("created_at"))
    if at is None:
        return "invalid_created_at"
    items = doc.get("items")
    if not isinstance(items, list) or not items:
        return "no_items"
    out = []
    for item in items:
        pid = item.get("product_id") if isinstance(item, Mapping) else None
        if not isinstance(pid, str) or not PRODUCT_ID_RE.match(pid):
            return "invalid_product_id"
        quantity = item.get("quantity", 1)
        quantity = quantity if isinstance(quantity, int) and quantity >= 1 else 1
        out.append(Interaction(user, pid, kind, at, quantity))
    return out


def merge_purchases(
    events: Iterable[Interaction], from_orders: Iterable[Interaction]
) -> list[Interaction]:
    """Behaviour events plus what orders say, each purchase (or cart) counted once.

    The platform usually reports the purchase as a behaviour event too, at payment time, which
    can be hours or days after the order was created: the same (customer, product, kind) within
    ``SAME_EVENT_WINDOW_S`` of an event is taken to be that event.
    """
    merged = list(events)
    times: dict[tuple[str, str, str], list[float]] = {}
    for it in merged:
        times.setdefault((it.user_id, it.product_id, it.kind), []).append(it.at)
    for it in from_orders:
        known = times.get((it.user_id, it.product_id, it.kind), [])
        if not any(abs(t - it.at) <= SAME_EVENT_WINDOW_S for t in known):
            merged.append(it)
    return merged


def load_training_data(db: Database) -> TrainingData:
    skipped: Counter[str] = Counter()
    events: list[Interaction] = []
    for doc in db[INTERACTIONS].find({}, _HISTORY_PROJECTION):
        it = interaction_from_document(doc)
        if isinstance(it, str):
            skipped[it] += 1
        else:
            events.append(it)
    from_orders: list[Interaction] = []
    fields = {
        "user_id": 1,
        "status": 1,
        "created_at": 1,
        "items.product_id": 1,
        "items.quantity": 1,
    }
    for doc in db[ORDERS].find({}, fields):
        rows = purchases_from_order(doc)
        if isinstance(rows, str):
            skipped[rows] += 1
        else:
            from_orders += rows
    return TrainingData(merge_purchases(events, from_orders), skipped)


def load_catalog(db: Database) -> Catalog:
    return Catalog.from_documents(db[PRODUCTS].find({}))


async def load_catalog_async(db: AsyncDatabase) -> Catalog:
    return Catalog.from_documents([d async for d in db[PRODUCTS].find({})])


def recent_history(db: Database, user_id: str, limit: int = HISTORY_LIMIT) -> list[Interaction]:
    """A customer's newest interactions (uses the user_id+at index)."""
    _check_user(user_id)
    cursor = db[INTERACTIONS].find({"user_id": user_id}, _HISTORY_PROJECTION)
    return _valid(cursor.sort("at", -1).limit(limit))


async def recent_history_async(
    db: AsyncDatabase, user_id: str, limit: int = HISTORY_LIMIT
) -> list[Interaction]:
    """A customer's newest interactions (uses the user_id+at index)."""
    _check_user(user_id)
    cursor = db[INTERACTIONS].find({"user_id": user_id}, _HISTORY_PROJECTION)
    return _valid([d async for d in cursor.sort("at", -1).limit(limit)])


def _check_user(user_id: str) -> None:
    # Identifiers are validated before any query and used only as plain string values.
    if not isinstance(user_id, str) or not USER_ID_RE.match(user_id):
        raise ValueError(f"user_id {user_id!r} does not match {USER_ID_RE.pattern}")


def _valid(docs: Iterable[Mapping[str, Any]]) -> list[Interaction]:
    # Rows are validated on write; a row that still fails here cannot be scored and is left out
    # of this customer's history (training reports such rows by reason).
    out = []
    for doc in docs:
        it = interaction_from_document(doc)
        if not isinstance(it, str):
            out.append(it)
    return out


# ---- training and publishing ----


@dataclass
class TrainResult:
    version_dir: Path
    config: TrainConfig
    metrics: dict[str, Any]
    published: bool


def train_and_publish(
    interactions: Sequence[Interaction],
    models_root: Path,
    *,
    config: TrainConfig | None = None,
    grid: Sequence[TrainConfig] | None = None,
    k: int = 10,
    publish: bool = True,
    source: str = "",
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Choose hyper-parameters on a leave-last-out validation split (unless ``config`` is
    given), train on all the data, write a registry version with a manifest and publish it."""
    if not interactions:
        raise ValueError(
            "no interactions to train on: post behaviour events (kefu.behavior.v1) or seed "
            "orders into MongoDB first, or pass --data interactions.jsonl"
        )
    metrics: dict[str, Any] = {"k": k}
    split = leave_last_out(interactions)
    if config is None:
        candidates = list(grid) if grid is not None else default_grid()
        if split.test and len(candidates) > 1:
            tuned = tune(interactions, k, candidates, progress)
            config = tuned.config
            metrics |= _metric_dict("validation", tuned.scores, tuned.popularity, k)
            metrics["configs_tried"] = len(tuned.tried)
        else:
            config = candidates[0]
    elif split.test:
        scores, _ = evaluate_config(config, split, k)
        metrics |= _metric_dict("validation", scores, evaluate_popularity(split, k), k)
    model = train(interactions, config)
    version_dir = registry.new_version_dir(models_root, "recommend")
    model.info["version"] = version_dir.name
    model.save(version_dir)
    registry.write_manifest(
        version_dir,
        {
            "kind": "recommend",
            "algorithm": config.algorithm,
            "params": config.describe(),
            "trained_on": {k_: model.info[k_] for k_ in ("n_users", "n_items", "n_interactions")},
            "source": source,
            "metrics": metrics,
        },
    )
    if publish:
        registry.publish(models_root, "recommend", version_dir.name)
        registry.prune(models_root, "recommend", keep=RECOMMEND_VERSIONS_KEPT)
    return TrainResult(version_dir, config, metrics, publish)


def _metric_dict(prefix: str, model: Scores, pop: Scores, k: int) -> dict[str, Any]:
    return {
        f"{prefix}_hr@{k}": round(model.hr, 4),
        f"{prefix}_ndcg@{k}": round(model.ndcg, 4),
        f"{prefix}_popularity_hr@{k}": round(pop.hr, 4),
        f"{prefix}_popularity_ndcg@{k}": round(pop.ndcg, 4),
        f"{prefix}_users": model.n,
    }


def load_model(models_root: Path, version: str | None = None) -> tuple[RecModel, str]:
    """The published (or the named) version; ModelNotFoundError says what to run."""
    version_dir = (
        models_root / "recommend" / version
        if version
        else registry.current_dir(models_root, "recommend")
    )
    registry.read_manifest(version_dir)
    model = RecModel.load(version_dir)
    return model, version_dir.name


def load_recommender(db: Database, models_root: Path) -> Recommender:
    """The published model bound to the current catalog (what the stage serves with)."""
    model, version = load_model(models_root)
    return Recommender(model, load_catalog(db), version=version)
