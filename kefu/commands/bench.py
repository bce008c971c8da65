"""`kefu bench bus|pipeline|nlu|recommend`: benchmarks; the LAST line printed is one JSON object.

`nlu` and `recommend` are the click commands of ``bench/nlu.py`` and ``bench/recommend.py``,
imported only when asked for, so `kefu --help` stays fast and a missing one says so.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path
from typing import Any

import click

from services.runtime.settings import Settings, SettingsError, load_settings

# subcommand -> (module, names of the click command in it, tried in order)
_LAZY: dict[str, tuple[str, tuple[str, ...]]] = {
    "nlu": ("bench.nlu", ("bench_nlu_cmd", "bench_nlu", "main", "cli")),
    "recommend": ("bench.recommend", ("bench_recommend_cmd", "bench_recommend", "main", "cli")),
}


def _lazy_command(name: str) -> click.Command:
    module_name, candidates = _LAZY[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"`kefu bench {name}` needs {module_name.replace('.', '/')}.py ({exc})"
        ) from None
    for attr in candidates:
        found = getattr(module, attr, None)
        if isinstance(found, click.Command):
            return found
    commands = [v for v in vars(module).values() if isinstance(v, click.Command)]
    if len(commands) == 1:
        return commands[0]
    raise click.ClickException(
        f"{module_name} has no click command (looked for {', '.join(candidates)})"
    )


class _BenchGroup(click.Group):
    """Subcommands of other modules resolve on use; their --help works as usual."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY:
            return _lazy_command(cmd_name)
        return super().get_command(ctx, cmd_name)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _last_line(summary: dict[str, Any]) -> None:
    click.echo(json.dumps(summary, ensure_ascii=False, sort_keys=True))


@click.group(cls=_BenchGroup)
def bench() -> None:
    """Benchmarks (the LAST line printed is one JSON object of figures)."""


@bench.command("bus")
@click.option(
    "--messages",
    type=click.IntRange(min=100),
    default=10000,
    show_default=True,
    help="Messages forwarded by each of raw aiokafka and the Faust stage.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Rounds; the best round of each is compared (noise on a shared machine only adds).",
)
@click.option("--partitions", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option("--timeout", type=float, default=None, help="Seconds per worker (default 60 + N/50).")
def bus(messages: int, repeat: int, partitions: int, timeout: float | None) -> None:
    """Faust forward-only stage vs raw aiokafka consume+produce on the running broker."""
    from bench.bus import BenchError, run_bus_bench

    settings = _settings()
    try:
        summary = asyncio.run(
            run_bus_bench(
                settings, messages, partitions, timeout, repeat, say=lambda s: click.echo(s)
            )
        )
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    _last_line(summary)


@bench.command("pipeline")
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=20.0,
    show_default=True,
    help="Messages per second, open loop (the start rate with --find-max).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="Seconds of sending (per step with --find-max).",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON lines of dialogues ({dialogue_id, language, customer_turns}) or a YAML script "
    "like data/demo/conversations.yaml; default: the built-in bilingual set (173 messages).",
)
@click.option(
    "--find-max",
    is_flag=True,
    help="Step the rate up until p99 exceeds the budget or the backlog grows.",
)
@click.option(
    "--budget-ms",
    type=click.FloatRange(min=1.0),
    default=None,
    help="p99 budget end to end (default 100; 500 with --find-max).",
)
@click.option(
    "--step-factor",
    type=click.FloatRange(min=1.05),
    default=1.5,
    show_default=True,
    help="--find-max: each step multiplies the rate by this.",
)
@click.option(
    "--reply-timeout",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="A message with no reply this long after sending counts as lost.",
)
@click.option(
    "--active",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Conversations open at the same time.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Messages sent and answered before measuring (first-use costs are not latency).",
)
@click.option(
    "--refine-steps",
    type=click.IntRange(min=0, max=5),
    default=2,
    show_default=True,
    help="--find-max: bisections between the last rate within budget and the first over it.",
)
@click.option(
    "--half-max-duration",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    help="--find-max: seconds of the final run at half the maximum rate (its p99 is reported).",
)
@click.option(
    "--no-ceiling",
    is_flag=True,
    help="Skip measuring the encoder alone (the encoder-bound ceiling).",
)
def pipeline(
    rate: float, duration: float, data_path: Path | None, find_max: bool,
    budget_ms: float | None, step_factor: float, reply_timeout: float, active: int,
    warmup: int, refine_steps: int, half_max_duration: float, no_ceiling: bool,
) -> None:  # fmt: skip
    """Open-loop bilingual traffic through the RUNNING stack: latency, loss, CPU, memory."""
    from bench.bus import BenchError
    from bench.pipeline import PipelineOptions, run_pipeline_bench
    from bench.traffic import TrafficError

    settings = _settings()
    options = PipelineOptions(
        rate=rate,
        duration=duration,
        data_path=data_path,
        find_max=find_max,
        budget_ms=budget_ms if budget_ms is not None else (500.0 if find_max else 100.0),
        step_factor=step_factor,
        refine_steps=refine_steps,
        reply_timeout=reply_timeout,
        active=active,
        warmup=warmup,
        half_max_duration=half_max_duration,
        encoder_ceiling=not no_ceiling,
    )
    try:
        summary = run_pipeline_bench(settings, options, say=lambda s: click.echo(s))
    except TrafficError as exc:
        raise click.UsageError(str(exc)) from None
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    _last_line(summary)
