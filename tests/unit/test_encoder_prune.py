"""Vocabulary pruning to the scripts zh/en shoppers type, on small hand-made tokenizers and a tiny
random model built both ways (pruned and ``--full-vocab``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from tokenizers.processors import TemplateProcessing

from services.models import build_encoder as be
from services.models import registry
from services.models.encoder import MODEL_DATA_FILE, SOURCE_IDS_FILE, Encoder
from services.models.tokenizer_build import (
    VocabPruningError,
    is_served_char,
    is_served_text,
    prune_tokenizer,
    token_sequence_agreement,
)
from tests.unit.test_encoder_graph import WORDS, make_model_dir

# Pieces of other scripts sit between served ones (and before '</s>'), so ids must be renumbered.
UNIGRAM_PIECES = [
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("<unk>", 0.0),
    ("▁привет", -3.0),
    ("▁", -2.0),
    ("▁the", -2.5),
    ("п", -6.0),
    ("р", -6.0),
    ("и", -6.0),
    ("в", -6.0),
    ("е", -6.0),
    ("т", -6.0),
    ("▁order", -3.0),
    ("▁ord", -4.0),
    ("er", -4.0),
    ("我", -5.0),
    ("的", -5.0),
    ("订单", -4.5),
    ("订", -6.0),
    ("单", -6.0),
    ("▁我", -4.0),
    ("안녕", -4.0),
    ("▁5", -4.0),
    ("μ", -5.0),
    ("m", -5.0),
    ("😀", -5.0),
    ("の", -5.0),
    ("é", -5.0),
    ("caf", -5.0),
    ("▁caf", -4.5),
    ("ǎ", -5.0),
    ("</s>", 0.0),
]
SERVED_TEXTS = ["the order", "我的订单", "5μm 😀の", "café  the", "ǎ", "", "order order the"]
OTHER_TEXTS = ["привет", "안녕 the order", "ok привет 我"]


def unigram_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.Unigram(UNIGRAM_PIECES, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    last = len(UNIGRAM_PIECES) - 1
    tok.post_processor = TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", last)]
    )
    return tok


@pytest.mark.parametrize("char", ["a", "é", "我", "〜", "の", "😀", "μ", "Ａ", "ǎ", "▁", "①", "→"])
def test_served_characters(char: str) -> None:
    assert is_served_char(char)


@pytest.mark.parametrize("char", ["п", "ا", "한", "ก", "Ł", "ệ", "ש", "\ue000"])
def test_other_scripts_are_not_served(char: str) -> None:
    assert not is_served_char(char)
    assert not is_served_text(f"order {char}")


def test_unigram_pruning_keeps_tokens_and_renumbers_ids() -> None:
    full = unigram_tokenizer()
    pruned = prune_tokenizer(full)
    dropped = {"▁привет", "п", "р", "и", "в", "е", "т", "안녕"}
    assert pruned.full_size == len(UNIGRAM_PIECES)
    assert pruned.tokenizer.get_vocab_size() == len(UNIGRAM_PIECES) - len(dropped)
    assert np.all(np.diff(pruned.kept_ids) > 0)  # kept pieces keep their order
    vocab = pruned.tokenizer.get_vocab()
    assert sorted(vocab.values()) == list(range(len(vocab)))  # contiguous new ids
    assert not dropped & set(vocab)
    for new, old in enumerate(pruned.kept_ids):
        assert pruned.tokenizer.id_to_token(new) == UNIGRAM_PIECES[old][0]
    for text in SERVED_TEXTS:
        ours, theirs = pruned.tokenizer.encode(text), full.encode(text)
        assert ours.tokens == theirs.tokens, text
        assert [int(pruned.kept_ids[i]) for i in ours.ids] == theirs.ids
    # the post-processor's '</s>' followed its piece to the new id
    assert pruned.tokenizer.encode("the").ids[-1] == vocab["</s>"] == len(vocab) - 1


def test_other_scripts_become_unknown_without_crashing() -> None:
    pruned = prune_tokenizer(unigram_tokenizer()).tokenizer
    unk = pruned.token_to_id("<unk>")
    assert unk == 2  # specials before the dropped pieces keep their ids
    for text in OTHER_TEXTS:
        ids = pruned.encode(text).ids
        assert unk in ids and ids[0] == 0 and ids[-1] == pruned.token_to_id("</s>")
    # served words next to the unknown ones are cut as before
    assert "▁order" in pruned.encode("안녕 the order").tokens


def test_sequence_agreement_counts_served_texts_only() -> None:
    full = unigram_tokenizer()
    pruned = prune_tokenizer(full).tokenizer
    result = token_sequence_agreement(pruned, full, SERVED_TEXTS + OTHER_TEXTS)
    assert result == {
        "agree": len(SERVED_TEXTS),
        "total": len(SERVED_TEXTS),
        "unserved_texts": len(OTHER_TEXTS),
        "examples": [],
    }
    # a tokenizer that cuts served text differently is caught
    other = Tokenizer.from_str(full.to_str())
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    result = token_sequence_agreement(other, full, SERVED_TEXTS)
    assert result["agree"] < result["total"] and result["examples"]


def test_wordpiece_pruning_and_bpe_refusal() -> None:
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "привет": 3, "hello": 4, "##s": 5, "[SEP]": 6}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 6)]
    )
    pruned = prune_tokenizer(tok)
    assert pruned.kept_ids.tolist() == [0, 1, 2, 4, 5, 6]
    assert pruned.tokenizer.encode("hellos").tokens == ["[CLS]", "hello", "##s", "[SEP]"]
    assert pruned.tokenizer.encode("hellos").ids == [2, 3, 4, 5]
    assert pruned.tokenizer.encode("привет").tokens == ["[CLS]", "[UNK]", "[SEP]"]
    bpe = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
    with pytest.raises(VocabPruningError, match="--full-vocab"):
        prune_tokenizer(bpe)


OTHER_WORDS = ["где", "заказ", "спасибо"]


def test_build_prunes_the_vocabulary_and_matches_the_full_build(tmp_path: Path) -> None:
    # source vocabulary: specials, three Russian words, then the English words
    make_model_dir(tmp_path / "base", "xlm-roberta", words=[*OTHER_WORDS, *WORDS])
    pruned_root, full_root = tmp_path / "pruned", tmp_path / "full"
    quiet = {"progress": False, "keep_fp32": True, "log": lambda _: None}
    pruned_version = be.build_encoder(pruned_root, tmp_path / "base", **quiet)  # type: ignore[arg-type]
    args = ["--out", str(full_root), "--base-model", str(tmp_path / "base"), "--full-vocab"]
    assert be.main([*args, "--keep-fp32", "--no-progress"]) == 0

    pruned_dir = pruned_root / "encoder" / pruned_version
    manifest = registry.read_manifest(pruned_dir)
    assert manifest["vocab"] == 4 + len(WORDS)
    pruning = manifest["vocab_pruning"]
    assert pruning["requested"] and pruning["applied"]
    assert (pruning["full_size"], pruning["kept"]) == (4 + len(OTHER_WORDS) + len(WORDS), 4 + 16)
    same = manifest["checks"]["pruned_vs_full_tokens"]
    assert same["agree"] == same["total"] >= 1000
    assert manifest["pad_id"] == 1 and manifest["external_data"] == {"model.onnx": MODEL_DATA_FILE}
    # the weights file is as readable as the graph file (onnx writes it owner-only)
    modes = {(pruned_dir / f).stat().st_mode & 0o777 for f in ("model.onnx", MODEL_DATA_FILE)}
    assert len(modes) == 1
    source_ids = np.load(pruned_dir / SOURCE_IDS_FILE)
    assert source_ids.tolist() == [0, 1, 2, 3, *range(4 + len(OTHER_WORDS), 4 + 3 + len(WORDS))]

    full_dir = registry.current_dir(full_root, "encoder")
    full_manifest = registry.read_manifest(full_dir)
    assert full_manifest["vocab"] == 4 + len(OTHER_WORDS) + len(WORDS)
    assert full_manifest["vocab_pruning"] == {"requested": False, "applied": False}
    assert not (full_dir / SOURCE_IDS_FILE).exists()

    texts = ["where is my order", "THANKS", "hello i want a refund", "the parcel arrived broken"]
    for model_file, tolerance in (("model_fp32.onnx", 1e-6), ("model.onnx", None)):
        pruned = Encoder.load(pruned_dir, threads=1, model_file=model_file)
        full = Encoder.load(full_dir, threads=1, model_file=model_file)
        pruned_ids, full_ids = pruned.token_ids(texts, ""), full.token_ids(texts, "")
        assert pruned_ids != full_ids  # renumbered...
        assert [[int(source_ids[i]) for i in seq] for seq in pruned_ids] == full_ids  # ...same
        a, b = pruned.embed(texts, prefix=""), full.embed(texts, prefix="")
        if tolerance is not None:  # fp32: the same numbers
            np.testing.assert_allclose(a, b, atol=tolerance)
        else:  # int8: the embedding matrix's scale may change with the rows kept
            assert float((a * b).sum(axis=1).min()) > 0.99

    # other scripts map to <unk> and still embed to unit vectors
    pruned = Encoder.load(pruned_dir, threads=1)
    ids = pruned.token_ids(["где мой заказ", "спасибо thanks"], "")
    assert ids == [[0, 3, 3, 3, 2], [0, 3, 4 + WORDS.index("thanks"), 2]]
    vectors = pruned.embed(["где мой заказ", "спасибо thanks"], prefix="")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)

    # the pruning setting is part of "up to date": asking for the full vocabulary rebuilds
    again = be.build_encoder(pruned_root, tmp_path / "base", prune_vocab=False, **quiet)  # type: ignore[arg-type]
    assert again != pruned_version
    assert registry.read_manifest(pruned_root / "encoder" / again)["vocab"] == 4 + 3 + 16


def test_missing_external_weights_say_what_to_do(tmp_path: Path) -> None:
    make_model_dir(tmp_path / "base", "bert")
    root = tmp_path / "models"
    version = be.build_encoder(root, tmp_path / "base", progress=False, log=lambda _: None)
    (root / "encoder" / version / MODEL_DATA_FILE).unlink()
    with pytest.raises(
        registry.ModelNotFoundError, match=r"model\.onnx\.data is missing.*kefu models build"
    ):
        Encoder.load(root)


def test_tokenizer_json_of_a_pruned_build_is_self_consistent(tmp_path: Path) -> None:
    make_model_dir(tmp_path / "base", "bert", words=[*WORDS, *OTHER_WORDS])
    root = tmp_path / "models"
    version = be.build_encoder(root, tmp_path / "base", progress=False, log=lambda _: None)
    spec = json.loads((root / "encoder" / version / "tokenizer.json").read_text("utf-8"))
    vocab = spec["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(len(vocab))) and not set(OTHER_WORDS) & set(vocab)
    specials = spec["post_processor"]["special_tokens"]
    assert {name: t["ids"] for name, t in specials.items()} == {"[CLS]": [2], "[SEP]": [3]}
