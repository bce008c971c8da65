"""The ONNX graph against a numpy BERT, on tiny random Hugging Face style model directories.

Each test writes its own model directory (config.json, model.safetensors, tokenizer.json) with
random weights, so the ``--base-model`` path, both weight namings (BERT and XLM-R), position
numbering, masking, pooling, the runtime Encoder and the build's publish / skip / fail paths are
all exercised without the network or the real 470 MB model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from safetensors.numpy import save_file
from scipy.special import erf
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from tokenizers.processors import TemplateProcessing

from services.models import build_encoder as be
from services.models import registry
from services.models.encoder import (
    MAX_BATCH_ATTENTION,
    Encoder,
    length_sorted_batches,
    pad_batch,
)
from services.models.onnx_graph import build_encoder_graph

WORDS = [
    *("where", "is", "my", "order", "refund", "please", "cancel", "the", "parcel"),
    *("arrived", "broken", "thanks", "hello", "i", "want", "a"),
]


def _specials(style: str) -> list[str]:
    return (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        if style == "bert"
        else ["<s>", "<pad>", "</s>", "<unk>"]
    )


def make_model_dir(
    path: Path,
    style: str,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    words: Sequence[str] = WORDS,
) -> dict[str, Any]:
    """Write a random model; returns what the numpy reference needs."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    specials = _specials(style)
    vocab = {tok: i for i, tok in enumerate([*specials, *words])}
    ffn, max_len = 2 * hidden, 24
    pad_id = 0 if style == "bert" else 1
    positions = max_len if style == "bert" else max_len + pad_id + 1
    prefix = "bert." if style == "bert" else "roberta."

    def rand(*shape: int, scale: float = 0.3) -> np.ndarray:
        return (rng.normal(size=shape) * scale).astype(np.float32)

    t: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": rand(len(vocab), hidden),
        "embeddings.position_embeddings.weight": rand(positions, hidden),
        "embeddings.token_type_embeddings.weight": rand(2 if style == "bert" else 1, hidden),
        "embeddings.LayerNorm.weight": 1 + rand(hidden, scale=0.1),
        "embeddings.LayerNorm.bias": rand(hidden, scale=0.1),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name, (out_dim, in_dim) in {
            "attention.self.query": (hidden, hidden),
            "attention.self.key": (hidden, hidden),
            "attention.self.value": (hidden, hidden),
            "attention.output.dense": (hidden, hidden),
            "intermediate.dense": (ffn, hidden),
            "output.dense": (hidden, ffn),
        }.items():
            t[p + name + ".weight"] = rand(out_dim, in_dim, scale=1 / math.sqrt(in_dim))
            t[p + name + ".bias"] = rand(out_dim, scale=0.1)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + ln + ".weight"] = 1 + rand(hidden, scale=0.1)
            t[p + ln + ".bias"] = rand(hidden, scale=0.1)
    save_file({prefix + k: v for k, v in t.items()}, str(path / "model.safetensors"))
    config = {
        "model_type": "bert" if style == "bert" else "xlm-roberta",
        "vocab_size": len(vocab),
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "max_position_embeddings": positions,
        "type_vocab_size": 2 if style == "bert" else 1,
        "layer_norm_eps": 1e-12 if style == "bert" else 1e-5,
        "hidden_act": "gelu",
        "pad_token_id": pad_id,
    }
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[3 if style != "bert" else 1]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    cls, sep = (specials[2], specials[3]) if style == "bert" else (specials[0], specials[2])
    tok.post_processor = TemplateProcessing(
        single=f"{cls} $A {sep}", special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])]
    )
    tok.save(str(path / "tokenizer.json"))
    return {"tensors": t, "config": config, "style": style, "pad_id": pad_id}


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def reference_embedding(spec: dict[str, Any], ids: list[int]) -> np.ndarray:
    """BERT forward pass in float64 numpy, straight from the Hugging Face tensor names."""
    t = {k: v.astype(np.float64) for k, v in spec["tensors"].items()}
    cfg = spec["config"]
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    n = len(ids)
    offset = spec["pad_id"] + 1 if spec["style"] != "bert" else 0
    x = (
        t["embeddings.word_embeddings.weight"][ids]
        + t["embeddings.position_embeddings.weight"][np.arange(n) + offset]
        + t["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(inp: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return inp @ t[p + name + ".weight"].T + t[p + name + ".bias"]

        hd = x.shape[1] // heads
        q, k, v = (
            lin(x, f"attention.self.{m}").reshape(n, heads, hd).transpose(1, 0, 2)
            for m in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(n, -1)
        x = _layer_norm(
            x + lin(ctx, "attention.output.dense"),
            t[p + "attention.output.LayerNorm.weight"],
            t[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        x = _layer_norm(
            x + lin(h, "output.dense"),
            t[p + "output.LayerNorm.weight"],
            t[p + "output.LayerNorm.bias"],
            eps,
        )
    pooled = x.mean(0)
    return (pooled / np.linalg.norm(pooled)).astype(np.float32)


@pytest.mark.parametrize("style", ["bert", "xlm-roberta"])
def test_graph_matches_numpy_bert_with_padding(tmp_path: Path, style: str) -> None:
    spec = make_model_dir(tmp_path / style, style)
    weights = be.load_hf_weights(tmp_path / style)
    assert weights.position_style == ("bert" if style == "bert" else "xlmr")
    model = build_encoder_graph(weights)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    n_vocab = len(_specials(style)) + len(WORDS)
    rng = np.random.default_rng(1)
    sequences = [list(rng.integers(4, n_vocab, size=n)) for n in (1, 7, 3, 20)]
    input_ids, mask = pad_batch(sequences, spec["pad_id"])
    out = session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
    assert out.shape == (4, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    for row, seq in enumerate(sequences):
        np.testing.assert_allclose(out[row], reference_embedding(spec, seq), atol=2e-5)


def test_graph_rejects_inconsistent_weights(tmp_path: Path) -> None:
    make_model_dir(tmp_path / "m", "bert")
    weights = be.load_hf_weights(tmp_path / "m")
    weights.layers[1].ffn_out_w = weights.layers[1].ffn_out_w[:, :10]
    with pytest.raises(ValueError, match="layer 1 ffn_out_w has shape"):
        build_encoder_graph(weights)


def test_base_model_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        be.hf_source(tmp_path / "nope")
    make_model_dir(tmp_path / "m", "bert")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type 'gpt2' is not supported"):
        be.hf_source(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors"):
        be.hf_source(tmp_path / "m")


def test_build_publishes_skips_and_serves(tmp_path: Path) -> None:
    spec = make_model_dir(tmp_path / "base", "xlm-roberta")
    root = tmp_path / "models"
    messages: list[str] = []
    version = be.build_encoder(
        root, tmp_path / "base", progress=False, keep_fp32=True, log=messages.append
    )
    version_dir = root / "encoder" / version
    assert registry.current_version(root, "encoder") == version
    assert {p.name for p in version_dir.iterdir()} == {
        "model.onnx",
        "model.onnx.data",  # the int8 initialisers, memory-mapped by onnxruntime
        "model_fp32.onnx",
        "tokenizer.json",
        "source_ids.npy",  # the pruned vocabulary's rows in the source model
        "manifest.json",
    }
    manifest = registry.read_manifest(version_dir)
    assert manifest["dim"] == 32 and manifest["pad_id"] == 1 and manifest["max_length"] == 24
    assert manifest["source"]["kind"] == "hf" and len(manifest["source_sha256"]) == 64
    assert manifest["checks"]["int8"]["mean"] >= be.COSINE_INT8_MIN
    assert manifest["sizes"]["model.onnx"] < manifest["sizes"]["fp32_model_bytes"]
    assert "published" in messages[-1]

    # same source, same recipe: nothing is rebuilt
    again = be.build_encoder(root, tmp_path / "base", progress=False, log=messages.append)
    assert again == version and "up to date" in messages[-1]
    assert registry.list_versions(root, "encoder") == [version]

    # the fp32 graph through the runtime class: order restored, batching exact, truncation
    encoder = Encoder.load(root, threads=1, model_file="model_fp32.onnx")
    assert encoder.version == version and encoder.dim == 32
    texts = ["where is my order", "", "refund please " * 30, "hello", "THANKS", "i want a refund"]
    one_by_one = encoder.embed(texts, prefix="", batch_size=1)
    batched = encoder.embed(texts, prefix="", batch_size=4)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    ids = encoder.token_ids(texts, prefix="")
    assert max(len(x) for x in ids) == 24
    for row, seq in enumerate(ids):
        np.testing.assert_allclose(batched[row], reference_embedding(spec, seq), atol=2e-5)
    # the published int8 model serves the same texts closely
    int8 = Encoder.load(version_dir, threads=1).embed(texts, prefix="")
    assert int8.shape == (6, 32) and float((int8 * batched).sum(1).min()) > 0.95


def test_build_fails_loudly_and_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_model_dir(tmp_path / "base", "bert")
    root = tmp_path / "models"
    monkeypatch.setattr(be, "COSINE_INT8_MIN", 1.01)  # unreachable: the check must fail
    code = be.main(["--out", str(root), "--base-model", str(tmp_path / "base"), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "failed its checks, nothing was published" in err and "int8 ONNX mean cosine" in err
    assert registry.current_version(root, "encoder") is None
    assert registry.list_versions(root, "encoder") == []


def test_length_sorted_batches_cover_every_index_once() -> None:
    lengths = [5, 300, 2, 2, 17, 512, 9, 9, 40, 3]
    batches = length_sorted_batches(lengths, batch_size=3, max_tokens=600)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)  # shortest first
    for batch in batches:
        assert 1 <= len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 600
    assert length_sorted_batches([], 32) == []


def test_long_texts_are_batched_by_attention_size() -> None:
    # 8 texts of 512 tokens fit MAX_BATCH_TOKENS (4096) but their attention tensors would not
    lengths = [512] * 8 + [300] * 4 + [20] * 40
    batches = length_sorted_batches(lengths, batch_size=32)
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest**2 <= MAX_BATCH_ATTENTION
    # short texts still fill whole batches; 512-token texts go two by two
    sizes = [(lengths[b[-1]], len(b)) for b in batches]
    assert sizes == [(20, 32), (20, 8), (300, 4), (512, 2), (512, 2), (512, 2), (512, 2)]
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))


def test_pad_batch_right_pads_with_the_pad_id() -> None:
    ids, mask = pad_batch([[0, 5, 2], [0, 2]], pad_id=1)
    assert ids.tolist() == [[0, 5, 2], [0, 2, 1]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert ids.dtype == np.int64 and mask.dtype == np.int64


def test_embed_rejects_a_bare_string(tmp_path: Path) -> None:
    make_model_dir(tmp_path / "base", "bert")
    root = tmp_path / "models"
    be.build_encoder(root, tmp_path / "base", progress=False, log=lambda _: None)
    encoder = Encoder.load(root, threads=1)
    with pytest.raises(TypeError, match="list of texts"):
        encoder.embed("where is my order")
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        encoder.embed(["ok", 3])  # type: ignore[list-item]
    assert encoder.embed([]).shape == (0, 32)
    with pytest.raises(registry.ModelNotFoundError, match="kefu models build"):
        Encoder.load(tmp_path / "empty")


def test_exposed_states_feed_the_top_layers_to_the_same_embedding(tmp_path: Path) -> None:
    """The seam fine-tuned intent layers rely on: running the encoder's own top layers
    (services/models/finetune.py) on the exposed token states gives the graph's embedding."""
    from services.models.encoder import HIDDEN_STATES_OUTPUT
    from services.models.finetune import TunedLayers
    from services.models.onnx_graph import OUTPUT, TUNED_INPUT, state_outputs

    make_model_dir(tmp_path / "m", "bert", layers=5)
    weights = be.load_hf_weights(tmp_path / "m")
    (j,) = state_outputs(5)
    session = ort.InferenceSession(
        build_encoder_graph(weights).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(2)
    n_vocab = len(_specials("bert")) + len(WORDS)
    input_ids, mask = pad_batch([list(rng.integers(4, n_vocab, size=n)) for n in (2, 9, 5)], 0)
    pooled, states = session.run(
        [OUTPUT, HIDDEN_STATES_OUTPUT.format(j)], {"input_ids": input_ids, "attention_mask": mask}
    )
    top = TunedLayers(
        layers=weights.layers[j:],
        num_heads=weights.num_heads,
        eps=weights.layer_norm_eps,
        head_w=np.zeros((2, weights.hidden), np.float32),
        head_b=np.zeros(2, np.float32),
    )
    np.testing.assert_allclose(top.pooled(states, mask), pooled, atol=2e-5)
    # the onnxruntime graph of the tuned layers + head (what nlu runs) = the numpy forward
    top.head_w = rng.normal(size=(3, weights.hidden)).astype(np.float32)
    top.head_b = rng.normal(size=3).astype(np.float32)
    exact = top.logits(states, mask)
    fp32 = ort.InferenceSession(top.graph().SerializeToString(), providers=["CPUExecutionProvider"])
    (graph_logits,) = fp32.run(None, {TUNED_INPUT: states, "attention_mask": mask})
    np.testing.assert_allclose(graph_logits, exact, atol=1e-4)
    # served with int8 weights: close to the float computation, not equal
    served = top.fast_logits(states, mask)
    assert np.corrcoef(served.ravel(), exact.ravel())[0, 1] > 0.99
