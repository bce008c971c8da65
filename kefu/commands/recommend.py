"""`kefu train recommend` and `kefu eval recommend` (registered by kefu/cli.py).

train: from MongoDB (the `interactions` and `orders` collections) or a JSON-lines file, choose
the algorithm and hyper-parameters on a leave-last-out validation split, train on everything,
write a registry version with a manifest and publish it.
eval: leave-last-out HR@k / NDCG@k of the model against a popularity baseline; the LAST line
printed is one JSON object.

Bad data exits with code 2 and a message that names the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from services.runtime.settings import Settings, SettingsError, load_settings

ALGORITHM_CHOICES = ("auto", "item_cosine", "item_bm25", "als")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _print_json(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, sort_keys=True))


def _read_file(path: Path) -> Any:
    from services.recommend.evaluate import DataError, read_jsonl

    try:
        return read_jsonl(path)
    except DataError as exc:
        raise click.UsageError(str(exc)) from None


def _read_mongo(settings: Settings, quiet: bool) -> Any:
    from pymongo.errors import PyMongoError

    from services.recommend.store import load_training_data
    from services.runtime.mongo import sync_db

    try:
        data = load_training_data(sync_db(settings))
    except PyMongoError as exc:
        raise click.ClickException(
            f"cannot read interactions from MongoDB (KEFU_MONGO_URI, db {settings.mongo_db}): "
            f"{exc.__class__.__name__}: {str(exc)[:300]}. Start the local stack with "
            "`kefu stack up` or point KEFU_MONGO_URI at your server."
        ) from None
    if not quiet:
        click.echo(
            f"read {len(data.interactions)} interactions from MongoDB "
            f"(rows left out: {data.describe_skipped()})"
        )
    return data.interactions


def _config(algorithm: str, half_life_days: float | None) -> Any:
    from services.recommend.model import TrainConfig

    if algorithm == "auto":
        return None
    if half_life_days is None:
        return TrainConfig(algorithm=algorithm)
    return TrainConfig(algorithm=algorithm, half_life_days=half_life_days)


def _grid(half_life_days: float | None) -> Any:
    from dataclasses import replace

    from services.recommend.evaluate import default_grid

    grid = default_grid()
    if half_life_days is None:
        return grid
    # A fixed decay: every other candidate once (the grid repeats each one per decay).
    fixed = [replace(c, half_life_days=half_life_days) for c in grid]
    return list({json.dumps(c.describe(), sort_keys=True): c for c in fixed}.values())


_algorithm_option = click.option(
    "--algorithm",
    type=click.Choice(ALGORITHM_CHOICES),
    default="auto",
    show_default=True,
    help="auto: pick the algorithm and its parameters by validation HR@10.",
)
_half_life_option = click.option(
    "--half-life-days",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Fix the time decay of signals (0: none); default: chosen on validation (auto) or 90.",
)


@click.command("recommend")
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON lines of interactions instead of MongoDB (see `kefu eval recommend --help`).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Models root to write to (default: KEFU_MODEL_DIR or ~/.cache/kefu/models).",
)
@_algorithm_option
@_half_life_option
@click.option("--no-publish", is_flag=True, help="Write the version but do not make it current.")
@click.option(
    "--if-missing",
    is_flag=True,
    help="Do nothing when a recommend version is already published (for setup scripts).",
)
@click.option("--quiet", is_flag=True, help="Only the final JSON line.")
def train_recommend_cmd(
    data_path: Path | None,
    out: Path | None,
    algorithm: str,
    half_life_days: float | None,
    no_publish: bool,
    if_missing: bool,
    quiet: bool,
) -> None:
    """Train the recommender from MongoDB (or --data) and publish a new model version."""
    from services.models import registry
    from services.recommend.model import ModelError
    from services.recommend.store import train_and_publish

    settings = _settings()
    models_root = out or settings.models_path
    current = registry.current_version(models_root, "recommend")
    if if_missing and current is not None:
        if not quiet:
            click.echo(f"recommend model {current} is already published: nothing to do")
        _print_json({"kind": "recommend", "version": current, "skipped": True})
        return
    interactions = _read_file(data_path) if data_path else _read_mongo(settings, quiet)
    try:
        result = train_and_publish(
            interactions,
            models_root,
            config=_config(algorithm, half_life_days),
            grid=_grid(half_life_days),
            publish=not no_publish,
            source=str(data_path) if data_path else f"mongodb:{settings.mongo_db}",
            progress=None if quiet else click.echo,
        )
    except (ModelError, ValueError, registry.ModelNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    if not quiet:
        click.echo(f"wrote recommend model {result.version_dir}")
        click.echo("published: " + ("yes (services swap to it)" if result.published else "no"))
    _print_json(
        {
            "kind": "recommend",
            "version": result.version_dir.name,
            "path": str(result.version_dir),
            "published": result.published,
            "algorithm": result.config.algorithm,
            "params": result.config.describe(),
            **result.metrics,
        }
    )


@click.command("recommend")
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON lines, one interaction each: either `user_id, item_id, ts[, rating]` (rating "
    "exports such as Amazon reviews; every row counts as a purchase) or our collection's "
    "`user_id, product_id, kind, quantity, at` (ISO 8601 or epoch).",
)
@click.option(
    "--from-mongo",
    is_flag=True,
    help="Evaluate on the `interactions` + `orders` collections of KEFU_MONGO_URI.",
)
@click.option(
    "--export",
    "export_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --from-mongo: also write what was read as JSON lines.",
)
@click.option("--k", type=click.IntRange(min=1, max=1000), default=10, show_default=True)
@_algorithm_option
@_half_life_option
@click.option("--quiet", is_flag=True, help="Only the final JSON line.")
def eval_recommend_cmd(
    data_path: Path | None,
    from_mongo: bool,
    export_path: Path | None,
    k: int,
    algorithm: str,
    half_life_days: float | None,
    quiet: bool,
) -> None:
    """Leave-last-out HR@k / NDCG@k of the recommender vs. popularity; last line JSON."""
    from services.recommend.evaluate import DataError, run_evaluation, write_jsonl
    from services.recommend.model import ModelError

    if (data_path is None) == (not from_mongo):
        raise click.UsageError("give exactly one of --data FILE or --from-mongo")
    if export_path is not None and not from_mongo:
        raise click.UsageError("--export only applies to --from-mongo")
    if data_path is not None:
        interactions = _read_file(data_path)
        source = str(data_path)
    else:
        settings = _settings()
        interactions = _read_mongo(settings, quiet)
        source = f"mongodb:{settings.mongo_db}"
        if export_path is not None:
            n = write_jsonl(interactions, export_path)
            if not quiet:
                click.echo(f"wrote {n} interactions to {export_path}")
    fixed = _config(algorithm, half_life_days)
    grid = [fixed] if fixed is not None else _grid(half_life_days)
    if not quiet:
        click.echo(
            f"{len(interactions)} interactions from {source}; "
            + (
                "tuning on a validation split of the training part"
                if len(grid) > 1
                else f"algorithm {algorithm}"
            )
        )
    try:
        result = run_evaluation(
            interactions, k=k, grid=grid, progress=None if quiet else click.echo
        )
    except DataError as exc:
        raise click.UsageError(str(exc)) from None
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    if not quiet:
        click.echo(_table(result, k))
    _print_json({"data": source, **result})


def _table(result: dict[str, Any], k: int) -> str:
    rows = [("", f"HR@{k}", f"NDCG@{k}", "users")]
    for name in ("model", "popularity"):
        r = result[name]
        rows.append((name, f"{r[f'hr@{k}']:.4f}", f"{r[f'ndcg@{k}']:.4f}", str(r["n_users"])))
    tail = result.get("long_tail")
    if tail:
        for name in ("model", "popularity"):
            r = tail[name]
            rows.append(
                (
                    f"{name} (long tail)",
                    f"{r[f'hr@{k}']:.4f}",
                    f"{r[f'ndcg@{k}']:.4f}",
                    str(r["n_users"]),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lift = result.get("hr_lift_vs_popularity")
    lines.append(
        f"chosen: {result['algorithm']} {json.dumps(result['params'], sort_keys=True)}; "
        f"HR lift vs popularity {lift} (the most possible here: {result.get('max_possible_lift')})"
    )
    return "\n".join(lines)
