"""Versioned models on disk.

Layout under the models root (``Settings.models_path``)::

    <root>/<kind>/<version>/manifest.json   # plus the kind's own files
    <root>/<kind>/CURRENT                   # the version services load, one line

``kind`` is encoder | intent | sentiment | recommend. A version directory is written completely
before ``publish`` points CURRENT at it (atomic rename), so a service that polls CURRENT never
sees a half-written model: this is what makes hot swap safe.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

KINDS = ("encoder", "intent", "sentiment", "recommend")


class ModelNotFoundError(FileNotFoundError):
    """No published version of a model kind; the message says how to build one."""


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")


def new_version_dir(root: Path, kind: str) -> Path:
    """Create and return an empty directory for a new version, named by UTC time."""
    _check_kind(kind)
    base = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1000):
        name = base if n == 0 else f"{base}-{n}"
        path = root / kind / name
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot allocate a version directory under {root / kind}")


def write_manifest(version_dir: Path, manifest: dict[str, Any]) -> None:
    data = dict(manifest)
    data.setdefault("version", version_dir.name)
    data.setdefault("created_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    (version_dir / "manifest.json").write_text(
        json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8"
    )


def read_manifest(version_dir: Path) -> dict[str, Any]:
    path = version_dir / "manifest.json"
    if not path.is_file():
        raise ModelNotFoundError(f"{version_dir} has no manifest.json: not a model version")
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def publish(root: Path, kind: str, version: str) -> None:
    """Make ``version`` the one services load (atomic)."""
    _check_kind(kind)
    if not (root / kind / version / "manifest.json").is_file():
        raise ModelNotFoundError(f"cannot publish {kind} {version}: no manifest in {root / kind}")
    tmp = root / kind / f".CURRENT.{os.getpid()}"
    tmp.write_text(version + "\n", encoding="utf-8")
    os.replace(tmp, root / kind / "CURRENT")


def current_version(root: Path, kind: str) -> str | None:
    _check_kind(kind)
    path = root / kind / "CURRENT"
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def current_dir(root: Path, kind: str) -> Path:
    """The directory of the published version, or a ModelNotFoundError saying what to run."""
    version = current_version(root, kind)
    if version is None:
        raise ModelNotFoundError(
            f"no {kind} model under {root}: run `kefu models build` (or set KEFU_MODEL_DIR)"
        )
    return root / kind / version


def list_versions(root: Path, kind: str) -> list[str]:
    _check_kind(kind)
    folder = root / kind
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file())
