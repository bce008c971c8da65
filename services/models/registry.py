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
import shutil
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
    folder = root / kind
    # Past the newest name of this second, not into a gap `prune` left: names must keep
    # sorting in the order the versions were made.
    same_second = [
        _version_order(p.name)[2]
        for p in (folder.iterdir() if folder.is_dir() else ())
        if p.name == base or p.name.startswith(base + "-")
    ]
    first = max(same_second) + 1 if same_second else 0
    for n in range(first, first + 1000):
        name = base if n == 0 else f"{base}-{n}"
        path = folder / name
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
    names = [p.name for p in folder.iterdir() if (p / "manifest.json").is_file()]
    return sorted(names, key=_version_order)


def _version_order(name: str) -> tuple[str, str, int]:
    """Oldest first: UTC date and time, then the counter ``new_version_dir`` adds within one
    second (numerically: ``-10`` comes after ``-9``)."""
    date, _, rest = name.partition("-")
    clock, _, counter = rest.partition("-")
    return date, clock, int(counter) if counter.isdigit() else 0


def _encoders_in_use(root: Path) -> set[str]:
    """Encoder versions named by any intent or sentiment version (``encoder/<version>``)."""
    used: set[str] = set()
    for kind in ("intent", "sentiment"):
        for version in list_versions(root, kind):
            try:
                named = read_manifest(root / kind / version).get("encoder_version", "")
            except (ModelNotFoundError, ValueError):
                continue
            if isinstance(named, str) and named.startswith("encoder/"):
                used.add(named.removeprefix("encoder/"))
    return used


def prune(root: Path, kind: str, keep: int, dry_run: bool = False) -> list[str]:
    """Delete old versions of ``kind``, keeping the ``keep`` newest and the current one.

    An encoder version that an intent or sentiment version still names is kept too: deleting it
    would leave that head without the encoder it was trained on. Returns the versions removed
    (or, with ``dry_run``, the ones that would be).
    """
    _check_kind(kind)
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    versions = list_versions(root, kind)  # names are UTC times: sorted oldest first
    protected = set(versions[-keep:])
    current = current_version(root, kind)
    if current is not None:
        protected.add(current)
    if kind == "encoder":
        protected |= _encoders_in_use(root)
    removed = [v for v in versions if v not in protected]
    if not dry_run:
        for version in removed:
            shutil.rmtree(root / kind / version)
    return removed
