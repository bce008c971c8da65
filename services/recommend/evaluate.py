"""Offline evaluation: leave-last-out HR@k / NDCG@k for the model and a popularity baseline.

Protocol (the usual one for next-item recommendation):

* For every customer with at least two distinct products, the newest interaction is held out
  (ties on time: the later line of the file); everything else is training data, except earlier
  interactions with the held-out product (it would be filtered out as already seen).
* Both the model and the baseline rank every product the customer has not interacted with in
  training; HR@k is 1 when the held-out product is in the top k, NDCG@k is 1/log2(rank + 1).
* Hyper-parameters (algorithm, neighbours, factors, decay, ...) are chosen on a *validation*
  split made the same way from the training part only; the held-out products are used once, to
  report the chosen model.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.recommend.model import KINDS, Interaction, TrainConfig, train
from services.recommend.recommender import Recommender

# Ids in evaluation files come from other systems (e.g. Amazon ASINs), so they are checked for
# shape only, not against the platform's product-id pattern.
_EXTERNAL_ID_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,128}$")


class DataError(ValueError):
    """An interactions file the evaluation cannot read; the message gives the line and fix."""


@dataclass
class Split:
    train: list[Interaction]
    test: dict[str, Interaction]  # customer -> their held-out newest interaction
    held_out_repeats: int = 0  # earlier interactions with a held-out product, not trained on


@dataclass
class Scores:
    hr: float
    ndcg: float
    n: int

    def as_dict(self, k: int) -> dict[str, float | int]:
        return {f"hr@{k}": round(self.hr, 4), f"ndcg@{k}": round(self.ndcg, 4), "n_users": self.n}


@dataclass
class TuneResult:
    config: TrainConfig
    scores: Scores
    popularity: Scores
    tried: list[tuple[TrainConfig, Scores]] = field(default_factory=list)


# ---- reading interaction files ----


def _parse_time(value: Any, where: str) -> float:
    """Epoch seconds from an epoch number (s or ms), an ISO 8601 string or {"$date": ...}."""
    if isinstance(value, Mapping) and "$date" in value:
        value = value["$date"]
        if isinstance(value, Mapping) and "$numberLong" in value:  # canonical extended JSON
            return int(value["$numberLong"]) / 1000.0
    if isinstance(value, bool):
        raise DataError(f"{where}: time must be a number or an ISO 8601 string, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise DataError(f"{where}: time {value!r} is not a valid epoch")
        # Epochs in milliseconds are > 1e11 (year 5138 in seconds).
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise DataError(f"{where}: time {value!r} is not ISO 8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise DataError(f"{where}: time must be a number or an ISO 8601 string, got {value!r}")


def interaction_from_record(record: Mapping[str, Any], where: str) -> Interaction:
    """One JSON record → Interaction. Accepts two shapes:

    * rating exports like the Amazon review data: ``user_id, item_id, rating, ts`` (a review
      means the product was bought, so the kind is ``purchase``);
    * our ``interactions`` collection: ``user_id, product_id, kind, quantity, at``.
    """
    user = record.get("user_id")
    item = record.get("product_id", record.get("item_id"))
    for name, value in (("user_id", user), ("product_id/item_id", item)):
        if not isinstance(value, str) or not _EXTERNAL_ID_RE.match(value):
            raise DataError(
                f"{where}: {name} {value!r} is missing or not an id "
                f"(letters, digits, _-:. up to 128 characters)"
            )
    assert isinstance(user, str) and isinstance(item, str)
    kind = record.get("kind", "purchase")
    if kind not in KINDS:
        raise DataError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if "at" in record:
        at = _parse_time(record["at"], where)
    elif "ts" in record:
        at = _parse_time(record["ts"], where)
    else:
        raise DataError(f"{where}: no time field: expected `ts` (epoch seconds) or `at`")
    quantity = record.get("quantity", 1)
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise DataError(f"{where}: quantity {quantity!r} must be a positive integer")
    return Interaction(user, item, kind, at, quantity)


def iter_jsonl(path: Path) -> Iterator[Interaction]:
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected JSON lines of interactions)")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise DataError(f"{where}: not UTF-8") from None
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: malformed JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected one JSON object per line")
            yield interaction_from_record(record, where)


def read_jsonl(path: Path) -> list[Interaction]:
    rows = list(iter_jsonl(path))
    if not rows:
        raise DataError(f"{path}: no interactions in the file")
    return rows


def write_jsonl(interactions: Iterable[Interaction], path: Path) -> int:
    """Write interactions in our collection's shape (readable by ``read_jsonl``)."""
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for it in interactions:
            at = datetime.fromtimestamp(it.at, tz=UTC).isoformat().replace("+00:00", "Z")
            record = {
                "user_id": it.user_id,
                "product_id": it.product_id,
                "kind": it.kind,
                "quantity": it.quantity,
                "at": at,
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


# ---- the split and the metrics ----


def leave_last_out(interactions: Sequence[Interaction]) -> Split:
    """Hold out each customer's newest product (see the module doc).

    Everything else the customer did stays in training, repeats and kinds included (that is
    what the recommender sees when serving); only earlier interactions with the held-out
    product itself are removed, or it would be filtered out as already seen.
    """
    by_user: dict[str, list[tuple[float, int, Interaction]]] = defaultdict(list)
    for order, it in enumerate(interactions):
        by_user[it.user_id].append((it.at, order, it))
    train_part: list[Interaction] = []
    test: dict[str, Interaction] = {}
    removed = 0
    for user, rows in by_user.items():
        newest = max(rows, key=lambda r: (r[0], r[1]))[2]
        if len({r[2].product_id for r in rows}) < 2:
            train_part.extend(r[2] for r in rows)
            continue
        test[user] = newest
        for _, _, it in rows:
            if it.product_id != newest.product_id:
                train_part.append(it)
            elif it is not newest:
                removed += 1
    return Split(train_part, test, removed)


def ndcg_at(rank: int | None, k: int) -> float:
    """NDCG@k of one held-out item at 0-based ``rank`` (None: not in the list)."""
    if rank is None or rank >= k:
        return 0.0
    return 1.0 / math.log2(rank + 2)


def score_rankings(
    rankings: Mapping[str, Sequence[str]], test: Mapping[str, Interaction], k: int
) -> Scores:
    if not test:
        raise DataError("no customer has two or more distinct products: nothing to hold out")
    hits = 0.0
    gains = 0.0
    for user, held in test.items():
        ranked = list(rankings.get(user, ()))[:k]
        rank = ranked.index(held.product_id) if held.product_id in ranked else None
        hits += rank is not None
        gains += ndcg_at(rank, k)
    return Scores(hits / len(test), gains / len(test), len(test))


def group_by_user(interactions: Iterable[Interaction]) -> dict[str, list[Interaction]]:
    out: dict[str, list[Interaction]] = defaultdict(list)
    for it in interactions:
        out[it.user_id].append(it)
    return out


def distinct_user_counts(interactions: Iterable[Interaction]) -> Counter[str]:
    """Customers per product, counted in first-seen order so that ties rank reproducibly."""
    pairs = dict.fromkeys((it.user_id, it.product_id) for it in interactions)
    return Counter(pid for _, pid in pairs)


def popularity_rankings(
    train_part: Sequence[Interaction], users: Iterable[str], k: int
) -> dict[str, list[str]]:
    """Baseline: most customers first, minus what each customer already has."""
    counts = distinct_user_counts(train_part)
    order = [pid for pid, _ in counts.most_common()]  # ties: first-seen order
    seen = group_by_user(train_part)
    out: dict[str, list[str]] = {}
    for user in users:
        mine = {it.product_id for it in seen.get(user, [])}
        out[user] = list(itertools.islice((pid for pid in order if pid not in mine), k))
    return out


def model_rankings(
    recommender: Recommender, train_part: Sequence[Interaction], users: Iterable[str], k: int
) -> dict[str, list[str]]:
    seen = group_by_user(train_part)
    return {
        user: [s.product_id for s in recommender.recommend(seen.get(user, []), n=k)]
        for user in users
    }


def evaluate_config(config: TrainConfig, split: Split, k: int) -> tuple[Scores, Recommender]:
    rec = Recommender(train(split.train, config))
    return score_rankings(model_rankings(rec, split.train, split.test, k), split.test, k), rec


def evaluate_popularity(split: Split, k: int) -> Scores:
    return score_rankings(popularity_rankings(split.train, split.test, k), split.test, k)


# ---- hyper-parameter search ----


def default_grid(base: TrainConfig | None = None) -> list[TrainConfig]:
    """Candidates, simplest first (the first of equally good ones wins)."""
    base = base or TrainConfig()
    shapes: list[dict[str, Any]] = []
    for neighbours in (20, 100):
        shapes.append({"algorithm": "item_cosine", "neighbours": neighbours})
    for neighbours in (20, 100):
        for k1 in (1.2, 100.0):
            shapes.append({"algorithm": "item_bm25", "neighbours": neighbours, "bm25_k1": k1})
    for factors in (16, 64):
        for reg in (0.1, 10.0):
            for alpha in (1.0, 10.0):
                shapes.append(
                    {"algorithm": "als", "factors": factors, "regularization": reg, "alpha": alpha}
                )
    grid = []
    for half_life in (0.0, 30.0, 365.0):
        grid += [replace(base, half_life_days=half_life, **shape) for shape in shapes]
    return grid


def tune(
    train_part: Sequence[Interaction],
    k: int,
    grid: Sequence[TrainConfig],
    progress: Callable[[str], None] | None = None,
) -> TuneResult:
    """Choose the config with the best validation HR@k (then NDCG@k) on ``train_part`` only."""
    if not grid:
        raise ValueError("the hyper-parameter grid is empty")
    inner = leave_last_out(train_part)
    if not inner.test:
        raise DataError(
            "too little data to tune: no customer has two distinct products in the training part"
        )
    pop = evaluate_popularity(inner, k)
    tried: list[tuple[TrainConfig, Scores]] = []
    for cfg in grid:
        scores, _ = evaluate_config(cfg, inner, k)
        tried.append((cfg, scores))
        if progress is not None:
            progress(
                f"  validation {json.dumps(cfg.describe(), sort_keys=True)}: "
                f"hr@{k}={scores.hr:.4f} ndcg@{k}={scores.ndcg:.4f}"
            )
    best = select_best(tried)
    return TuneResult(best[0], best[1], pop, tried)


def select_best(tried: Sequence[tuple[TrainConfig, Scores]]) -> tuple[TrainConfig, Scores]:
    """Best validation HR@k; configs within one standard error of it count as tied on HR.

    HR differences smaller than the binomial standard error are a handful of customers, i.e.
    noise, so among those the better ranking (NDCG@k) wins, then the earlier (simpler) config.
    """
    best_hr = max(s.hr for _, s in tried)
    n = tried[0][1].n
    band = math.sqrt(best_hr * (1.0 - best_hr) / n) if n else 0.0
    contenders = [(c, s) for c, s in tried if s.hr >= best_hr - band - 1e-12]
    return max(contenders, key=lambda cs: cs[1].ndcg)  # max() keeps the first of equals


def run_evaluation(
    interactions: Sequence[Interaction],
    k: int = 10,
    grid: Sequence[TrainConfig] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole protocol; returns the summary that `kefu eval recommend` prints last."""
    if k < 1:
        raise ValueError("k must be at least 1")
    split = leave_last_out(interactions)
    if not split.test:
        raise DataError("no customer has two or more distinct products: nothing to hold out")
    grid = list(grid) if grid is not None else default_grid()
    tuned = tune(split.train, k, grid, progress) if len(grid) > 1 else None
    chosen = tuned.config if tuned is not None else grid[0]
    rec = Recommender(train(split.train, chosen))
    model_ranked = model_rankings(rec, split.train, split.test, k)
    pop_ranked = popularity_rankings(split.train, split.test, k)
    model_scores = score_rankings(model_ranked, split.test, k)
    pop_scores = score_rankings(pop_ranked, split.test, k)
    lift = model_scores.hr / pop_scores.hr if pop_scores.hr > 0 else None
    # Where collaborative filtering has to earn its keep: held-out products that are not among
    # the k best sellers, which popularity can only reach after filtering.
    head = {pid for pid, _ in distinct_user_counts(split.train).most_common(k)}
    tail = {u: it for u, it in split.test.items() if it.product_id not in head}
    long_tail = None
    if tail:
        long_tail = {
            "model": score_rankings(model_ranked, tail, k).as_dict(k),
            "popularity": score_rankings(pop_ranked, tail, k).as_dict(k),
        }
    return {
        "n_interactions": len(interactions),
        "n_users": len({it.user_id for it in interactions}),
        "n_items": len({it.product_id for it in interactions}),
        "n_test_users": len(split.test),
        "held_out_repeats_removed": split.held_out_repeats,
        "k": k,
        "algorithm": chosen.algorithm,
        "params": chosen.describe(),
        "model": model_scores.as_dict(k),
        "popularity": pop_scores.as_dict(k),
        "hr_lift_vs_popularity": None if lift is None else round(lift, 4),
        # No model can beat HR@k = 1: the most any model could gain over popularity here.
        "max_possible_lift": None if pop_scores.hr == 0 else round(1.0 / pop_scores.hr, 4),
        "long_tail": long_tail,
        "validation": None
        if tuned is None
        else {
            "model": tuned.scores.as_dict(k),
            "popularity": tuned.popularity.as_dict(k),
            "configs_tried": len(tuned.tried),
        },
    }
