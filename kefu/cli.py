"""The `kefu` command: stack, services, models, demo, chat, tap and benchmarks.

Each area's commands live in kefu/commands/<area>.py; this module only assembles the group,
so `kefu --help` stays fast (heavy imports happen inside commands).
"""

from __future__ import annotations

import importlib
import sys

import click

from services.runtime.settings import SettingsError, load_settings

SERVICES = ("ingest", "nlu", "sentiment", "recommend", "reply", "orders")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """kefu (客服): a bilingual AI customer-service back end over Kafka."""


@main.command()
@click.argument("service", type=click.Choice(SERVICES))
def serve(service: str) -> None:
    """Run one service in the foreground (what `kefu stack up` and the pods start)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if service == "orders":
        import asyncio

        from services.orders.server import main as orders_main

        asyncio.run(orders_main(settings))
        return
    module = importlib.import_module(f"services.{service}.app")
    stage = module.build(settings)
    from services.runtime.bus import run_worker

    run_worker(stage)


def _register(module_name: str, names: tuple[str, ...]) -> None:
    """Add commands defined in kefu/commands/<module>.py (missing ones are a packaging bug)."""
    module = importlib.import_module(f"kefu.commands.{module_name}")
    for name in names:
        main.add_command(getattr(module, name))


def _register_recommend() -> None:
    """`kefu train recommend` / `kefu eval recommend` join the model train/eval groups."""
    from kefu.commands import models, recommend

    models.train.add_command(recommend.train_recommend_cmd)
    models.eval_group.add_command(recommend.eval_recommend_cmd)


_COMMANDS: dict[str, tuple[str, ...]] = {
    "tap": ("tap",),
    "stack": ("stack", "seed", "prune"),
    "build": ("models",),
    "models": ("train", "eval_group"),
    "bench": ("bench",),
    "conversation": ("demo", "chat"),
}
for _module, _names in _COMMANDS.items():
    _register(_module, _names)
_register_recommend()


if __name__ == "__main__":
    sys.exit(main())
