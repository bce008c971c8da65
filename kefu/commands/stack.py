"""`kefu stack up|down|status` and `kefu seed`."""

from __future__ import annotations

import json
from typing import Any

import click

from kefu import stack as stacklib
from kefu.localstack import StackError
from services.runtime.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def stack() -> None:
    """Start, stop and inspect the local stack (Kafka, FerretDB, every service)."""


@stack.command()
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(stacklib.SERVICES),
    help="Start only these services (repeatable); Kafka and FerretDB always start.",
)
@click.option("--timeout", default=240.0, show_default=True, help="Seconds to wait for readiness.")
def up(only: tuple[str, ...], timeout: float) -> None:
    """Start Kafka, FerretDB, the topics and every service; wait until all are ready."""
    settings = _settings()
    try:
        stacklib.up(
            settings,
            services=only or stacklib.SERVICES,
            timeout=timeout,
            say=lambda line: click.echo(line),
        )
    except StackError as exc:
        raise click.ClickException(f"{exc}\n(stop what did start with `kefu stack down`)") from None


@stack.command()
@click.option("--purge", is_flag=True, help="Also delete Kafka and FerretDB data and the logs.")
def down(purge: bool) -> None:
    """Stop exactly the processes `kefu stack up` started (by pid); keep data unless --purge."""
    stopped = stacklib.down(_settings(), purge=purge, say=lambda line: click.echo(line))
    if not stopped:
        click.echo("nothing was running")


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Each component: pid, health, consumer lag. Exit code 1 when something is unhealthy."""
    rows = stacklib.status(_settings())
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        click.echo(f"{'component':10s} {'pid':>7s}  {'health':8s} {'lag':18s} detail")
        for row in rows:
            health = "ok" if row["healthy"] else ("DOWN" if not row["running"] else "UNREADY")
            lag = row.get("lag", "")
            lag_text = (
                ", ".join(f"{t.split('.')[1]}={n}" for t, n in lag.items())
                if isinstance(lag, dict)
                else str(lag)
            )
            detail = (
                row["detail"]
                if isinstance(row["detail"], str)
                else json.dumps(row["detail"], ensure_ascii=False)
            )
            click.echo(
                f"{row['component']:10s} {row['pid'] or '-':>7}  {health:8s} {lag_text:18s} {detail[:110]}"
            )
    if not all(r["healthy"] for r in rows):
        raise SystemExit(1)


def _reachable_db() -> Any:
    """The configured MongoDB database, after a ping (a clear error when it is not up)."""
    from services.runtime.mongo import sync_db

    settings = _settings()
    db = sync_db(settings)
    try:
        db.command("ping")
    except Exception as exc:
        raise click.ClickException(
            f"cannot reach MongoDB at {settings.mongo_uri}: {exc}; run `kefu stack up`"
        ) from None
    return db


@click.command()
@click.option(
    "--no-reset", is_flag=True, help="Keep existing documents (default: replace the demo data)."
)
def seed(no_reset: bool) -> None:
    """Load the demo data set: products, users, orders in every state, behaviour, FAQ."""
    from services.orders.seed import seed as seed_orders
    from services.reply.faq import seed_faq

    db = _reachable_db()
    counts = seed_orders(db, reset=not no_reset)
    counts["faq"] = seed_faq(db)
    click.echo("seeded " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    # the recommender learns from what was just seeded (the stage picks the version up live)
    from services.recommend.store import load_training_data, train_and_publish

    result = train_and_publish(
        load_training_data(db).interactions, _settings().models_path, source="kefu seed"
    )
    click.echo(f"recommend model {result.version_dir.name} published")


@click.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Age to keep, e.g. 30d, 12h, 90m (at least 1h).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
def prune(older_than: str, dry_run: bool) -> None:
    """Delete per-message bookkeeping older than an age: ingest's seen ids, reply's claims and
    transcripts, idle dialogue state (not conversations waiting for a person). See
    services/runtime/retention.py for what is kept and why."""
    from services.runtime.retention import RetentionError, parse_retention
    from services.runtime.retention import prune as prune_db

    try:
        age = parse_retention(older_than)
    except RetentionError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    db = _reachable_db()
    counts = prune_db(db, age, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} (older than {older_than}): " + ", ".join(f"{k}={v}" for k, v in counts.items())
    )
