"""Memory of an nlu-like process: the encoder, the intent head and the runtime's imports.

Measures this very process (run it fresh, nothing else loaded): RSS after each step and the peak
(``VmHWM``), split into anonymous memory and file-backed pages (the memory-mapped int8 weights
and shared libraries, which the kernel can drop and share between processes). Steps: the
runtime's imports (Faust, aiokafka, motor: what every stage holds), ``Encoder.load``, the
published intent head, then ``n`` texts one at a time and in length-sorted batches of 32 (what
the nlu stage does at low and high traffic) and their intent predictions. As in the nlu stage,
the models are loaded and run in one worker thread, not the main thread: glibc gives each
thread that allocates its own malloc arena, which shows in RSS.

    python -m bench.nlu_memory [--n 500] [--encoder DIR] [--no-runtime]

The LAST line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

RSS_TARGET_MB = 400  # the nlu process, Faust included (issue 3)


def memory_mb() -> dict[str, float]:
    """This process's VmRSS, VmHWM (peak RSS), RssAnon and RssFile in MiB (Linux /proc)."""
    wanted = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in wanted:
                    out[key] = round(int(value.split()[0]) / 1024.0, 1)  # kB -> MiB
    except OSError:
        pass
    if "VmHWM" not in out:  # not Linux: at least the peak, from getrusage (KiB on Linux/BSD)
        out["VmHWM"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    return out


def measure(
    models_root: Path | None,
    encoder_dir: Path | None,
    n: int,
    with_runtime: bool,
    say: Any = print,
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []

    def record(name: str, started: float) -> None:
        entry = {"step": name, "seconds": round(time.perf_counter() - started, 2), **memory_mb()}
        steps.append(entry)
        say(
            f"{name:<28} RSS {entry.get('VmRSS', 0):7.1f} MiB (anon {entry.get('RssAnon', 0):6.1f},"
            f" file {entry.get('RssFile', 0):6.1f})  peak {entry['VmHWM']:7.1f} MiB"
            f"  {entry['seconds']:6.2f} s"
        )

    t0 = time.perf_counter()
    import numpy  # noqa: F401  (what every model module imports)

    record("python + numpy", t0)
    if with_runtime:
        t0 = time.perf_counter()
        # what every stage imports: Faust and aiokafka (bus), motor (mongo)
        for module in ("services.runtime.bus", "services.runtime.mongo"):
            importlib.import_module(module)

        record("runtime imports (Faust)", t0)

    from bench.nlu import DEFAULT_TEXTS
    from services.models import registry
    from services.models.encoder import Encoder
    from services.models.intent import IntentModel
    from services.nlu.understand import predict_batch

    if encoder_dir is None:
        if models_root is None:
            from services.runtime.settings import load_settings

            models_root = load_settings().models_path
        encoder_dir = registry.current_dir(models_root, "encoder")
    # the nlu stage's single inference thread
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlu-infer")

    def in_worker(fn: Callable[[], T]) -> T:
        return worker.submit(fn).result()

    t0 = time.perf_counter()
    encoder = in_worker(lambda: Encoder.load(encoder_dir))
    record("Encoder.load", t0)

    intent: IntentModel | None = None
    intent_note = None
    if models_root is not None:
        try:
            t0 = time.perf_counter()
            intent = in_worker(
                lambda: IntentModel.load(registry.current_dir(models_root, "intent"), serving=True)
            )
            record("IntentModel.load", t0)
        except (registry.ModelNotFoundError, FileNotFoundError) as exc:
            intent_note = f"no intent head measured: {exc}"
            say(intent_note)

    texts = [DEFAULT_TEXTS[i % len(DEFAULT_TEXTS)] for i in range(n)]

    def one_by_one() -> None:
        for text in texts:
            if intent is not None:
                predict_batch(encoder, intent, [text])
            else:
                encoder.embed([text])

    def batched() -> None:
        if intent is not None:
            predict_batch(encoder, intent, texts)
        else:
            encoder.embed(texts, batch_size=32)

    t0 = time.perf_counter()
    in_worker(one_by_one)
    record(f"{n} texts, batch 1", t0)
    t0 = time.perf_counter()
    in_worker(batched)
    record(f"{n} texts, batches of 32", t0)
    worker.shutdown()

    final = steps[-1]
    summary: dict[str, Any] = {
        "bench": "nlu_memory",
        "n": n,
        "encoder_dir": str(encoder_dir),
        "encoder_vocab": encoder.manifest.get("vocab"),
        "intent_head": intent is not None,
        "runtime_imported": with_runtime,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "rss_mb": final.get("VmRSS"),
        "peak_rss_mb": final["VmHWM"],
        "rss_anon_mb": final.get("RssAnon"),
        "rss_file_mb": final.get("RssFile"),
        "target_mb": RSS_TARGET_MB,
        "steps": steps,
    }
    if intent_note:
        summary["note"] = intent_note
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Peak RSS of an nlu-like process.")
    parser.add_argument("--n", type=int, default=500, help="texts to embed (default 500)")
    parser.add_argument("--models", type=Path, help="models root (default: KEFU_MODEL_DIR/cache)")
    parser.add_argument("--encoder", type=Path, help="an encoder version dir (default: CURRENT)")
    parser.add_argument(
        "--no-runtime", action="store_true", help="do not import the runtime (Faust, motor)"
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        print("error: --n must be >= 1", file=sys.stderr)
        return 2
    from services.models.registry import ModelNotFoundError
    from services.runtime.settings import SettingsError, load_settings

    try:
        root = args.models or load_settings().models_path
        summary = measure(root, args.encoder, args.n, not args.no_runtime)
    except (ModelNotFoundError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
