"""The sentence encoder services run: onnxruntime + tokenizers, no torch.

A version directory (written by ``build_encoder``) holds ``model.onnx`` (int8), ``tokenizer.json``
and ``manifest.json``. The graph returns mean-pooled, L2-normalised sentence embeddings, so
``embed`` only tokenises, pads and runs it.

Short customer messages are dominated by padding when batched naively, so ``embed`` sorts the
texts by token count, batches neighbours of similar length and restores the caller's order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from services.models import registry

MODEL_FILE = "model.onnx"
# the int8 graph's initialisers (written by the build, memory-mapped by onnxruntime)
MODEL_DATA_FILE = "model.onnx.data"
# int32 [vocab]: row i of the word embeddings is row source_ids[i] of the source model's
# (written when the build pruned the vocabulary; for comparisons with the source model)
SOURCE_IDS_FILE = "source_ids.npy"
FP32_MODEL_FILE = "model_fp32.onnx"
TOKENIZER_FILE = "tokenizer.json"
EMBEDDING_OUTPUT = "sentence_embedding"
HIDDEN_STATES_OUTPUT = "hidden_states_{}"  # token states after layer j (encoder recipe >= 3)
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
# Upper bound on batch * padded length: keeps the hidden-state tensors of a batch bounded
# instead of growing with batch_size.
MAX_BATCH_TOKENS = 4096
# Upper bound on batch * padded length^2: the graph holds a few attention tensors of
# heads * batch * len^2 floats at once. At 2 * 512^2 one is 25 MB; 8 texts of 512 tokens in one
# batch (what MAX_BATCH_TOKENS alone allows) took the process from ~110 to ~420 MB at its peak,
# while batching texts that long gains no speed: their matrices already fill the cores.
MAX_BATCH_ATTENTION = 2 * 512 * 512


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu is installed and sees a device, CPU otherwise."""
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


_process_threads: int | None = None


def set_default_threads(threads: int) -> None:
    """Intra-op threads for every session this process creates from now on (services set
    KEFU_INFERENCE_THREADS; training and benchmarks keep the default)."""
    global _process_threads
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    _process_threads = threads


def default_threads() -> int:
    if _process_threads is not None:
        return _process_threads
    return max(1, min(2, os.cpu_count() or 1))


class Encoder:
    """Multilingual sentence encoder (multilingual-e5-small by default) on onnxruntime."""

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        manifest: dict[str, Any],
        model_path: Path,
    ) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self.manifest = manifest
        self.model_path = model_path
        self.version: str = str(manifest.get("version") or model_path.parent.name)
        self.dim: int = int(manifest["dim"])
        self.pad_id: int = int(manifest.get("pad_id", 1))
        self.max_length: int = int(manifest.get("max_length", 512))
        self.providers: list[str] = list(session.get_providers())
        output = session.get_outputs()[0]
        # layers whose token states the graph exposes (fine-tuned intent layers start there)
        state_prefix = HIDDEN_STATES_OUTPUT.format("")
        self.state_layers: frozenset[int] = frozenset(
            int(o.name[len(state_prefix) :])
            for o in session.get_outputs()
            if o.name.startswith(state_prefix)
        )
        if output.shape[-1] != self.dim:
            raise ValueError(
                f"{model_path}: output has {output.shape[-1]} dims but the manifest says "
                f"{self.dim}; rebuild the encoder with `kefu models build`"
            )

    @classmethod
    def load(
        cls,
        model_dir: Path,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        model_file: str | None = None,
    ) -> Encoder:
        """Load a version directory (or a models root / ``encoder`` folder: its CURRENT version).

        ``threads``: intra-op threads (default min(2, cores)). ``providers``: onnxruntime
        execution providers (default CUDA when available, else CPU). ``model_file``: defaults to
        ``model.onnx`` (int8), or ``model_fp32.onnx`` on CUDA when the build kept it, because
        dynamically quantised int8 operators only run on the CPU.
        """
        version_dir = _resolve_version_dir(Path(model_dir))
        manifest = registry.read_manifest(version_dir)
        chosen = list(providers) if providers is not None else default_providers()
        if model_file is None:
            fp32 = version_dir / FP32_MODEL_FILE
            on_gpu = bool(chosen) and chosen[0] == "CUDAExecutionProvider"
            model_file = FP32_MODEL_FILE if on_gpu and fp32.is_file() else MODEL_FILE
        model_path = version_dir / model_file
        tokenizer_path = version_dir / TOKENIZER_FILE
        external = manifest.get("external_data", {}).get(model_file)
        needed = [model_path, tokenizer_path]
        if external:
            needed.append(version_dir / str(external))
        for path in needed:
            if not path.is_file():
                raise registry.ModelNotFoundError(
                    f"{path} is missing: the encoder version is incomplete; "
                    "rebuild it with `kefu models build`"
                )
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options = session_options(threads or default_threads())
        session = ort.InferenceSession(str(model_path), options, providers=chosen)
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        max_length = int(manifest.get("max_length", 512))
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.no_padding()  # embed() pads each length-sorted batch itself
        return cls(session, tokenizer, manifest, model_path)

    @classmethod
    def load_current(cls, models_root: Path, threads: int | None = None) -> Encoder:
        """The version CURRENT points at under ``models_root`` (``Settings.models_path``)."""
        return cls.load(registry.current_dir(models_root, "encoder"), threads=threads)

    def token_ids(self, texts: Sequence[str], prefix: str = QUERY_PREFIX) -> list[list[int]]:
        """Token ids with specials, at most ``max_length`` (what ``embed`` feeds): a longer
        text keeps its first quarter and its end, since a long message tends to state its
        request last ("… I have been waiting forever. Where is my order?")."""
        _check_texts(texts)
        encodings = self._tokenizer.encode_batch([prefix + t for t in texts])
        return [
            _head_and_tail_ids(e, self.max_length) if e.overflowing else e.ids for e in encodings
        ]

    def embed(
        self,
        texts: Sequence[str],
        prefix: str = QUERY_PREFIX,
        batch_size: int = 32,
    ) -> np.ndarray:
        """L2-normalised float32 embeddings [len(texts), dim], in the order of ``texts``.

        ``prefix``: "query: " for questions and messages, "passage: " for documents searched
        (the e5 convention). Texts over ``max_length`` tokens are truncated.
        """
        return self._run(texts, prefix, batch_size, None)[0]

    def embed_with_states(
        self,
        texts: Sequence[str],
        layer: int,
        prefix: str = QUERY_PREFIX,
        batch_size: int = 32,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``embed`` plus, from the same pass, the token states after ``layer`` layers: one
        float32 [tokens_i, dim] array per text, padding removed."""
        if layer not in self.state_layers:
            raise ValueError(
                f"encoder {self.version} does not expose the states after layer {layer} "
                f"(it has {sorted(self.state_layers) or 'none'}); rebuild it with "
                "`kefu models build`"
            )
        return self._run(texts, prefix, batch_size, layer)

    def _run(
        self, texts: Sequence[str], prefix: str, batch_size: int, layer: int | None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Length-sorted batches through the graph: embeddings, and with ``layer`` the token
        states per text (views into each batch's output, padding cut off)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ids = self.token_ids(texts, prefix)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        states: list[np.ndarray] = []
        names = [EMBEDDING_OUTPUT]
        if layer is not None:
            states = [np.empty((0, self.dim), np.float32)] * len(ids)
            names.append(HIDDEN_STATES_OUTPUT.format(layer))
        lengths = [len(x) for x in ids]
        for batch in length_sorted_batches(lengths, batch_size, MAX_BATCH_TOKENS):
            input_ids, mask = pad_batch([ids[i] for i in batch], self.pad_id)
            result = self._session.run(names, {"input_ids": input_ids, "attention_mask": mask})
            out[batch] = result[0]
            if layer is not None:
                for row, i in enumerate(batch):
                    states[int(i)] = result[1][row, : lengths[int(i)]]
        return out, states


def _head_and_tail_ids(encoding: Any, max_length: int) -> list[int]:
    """A truncated encoding's whole text as ids, cut to ``max_length``: the opening special
    token and a quarter of the room from the start, the rest from the end (closing special
    included). The tokenizer's overflow chunks hold the rest of the text, each wrapped in its
    own special tokens; the tokenizer itself is not touched, as other threads may use it."""
    chunks = [encoding, *encoding.overflowing]
    content = [
        i
        for chunk in chunks
        for i, special in zip(chunk.ids, chunk.special_tokens_mask, strict=True)
        if not special
    ]
    first = [i for i, sp in zip(encoding.ids, encoding.special_tokens_mask, strict=True) if sp]
    opening, closing = first[:1], first[1:]
    ids = opening + content + closing
    if len(ids) <= max_length:
        return ids
    head = max_length // 4
    return ids[:head] + ids[len(ids) - (max_length - head) :]


def session_options(threads: int) -> ort.SessionOptions:
    """How every kefu onnxruntime session runs (the encoder, fine-tuned intent layers)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # keep onnxruntime's warnings out of service logs
    # The CPU arena keeps the high-water mark of every run for the process's lifetime: after
    # one batch of eight 512-token texts RSS stayed at ~470 MB (arena shrinkage per run got
    # it back but grew RSS on short batches); without the arena it fell back to ~175 MB, at
    # no measurable cost on short texts (2-core AVX2, batch 1 and 32).
    # Left on on purpose: pre-packing (turning it off saved no RSS, since the weights are
    # then read from the memory-mapped file instead, and cost 20-30% CPU at batch 1) and
    # memory patterns (no effect either way with dynamic shapes).
    options.enable_cpu_mem_arena = False
    # No spin-waiting between runs: onnxruntime's pool threads otherwise spin after every
    # batch, which on a small host takes the CPU that Kafka, FerretDB and the other stages
    # need (nlu used 60% of a core at 5 msg/s with spinning; see docs/benchmarks.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def length_sorted_batches(
    lengths: Sequence[int],
    batch_size: int,
    max_tokens: int = MAX_BATCH_TOKENS,
    max_attention: int = MAX_BATCH_ATTENTION,
) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (shortest first).

    A batch holds at most ``batch_size`` texts and, once it has one, at most ``max_tokens``
    padded tokens (its longest length times its size) and at most ``max_attention`` attention
    cells per head (its size times its longest length squared).
    """
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = start + 1
        # sorted ascending, so the last member is the longest: its length sets the padding
        while (
            end < len(order)
            and end - start < batch_size
            and (end - start + 1) * lengths[order[end]] <= max_tokens
            and (end - start + 1) * lengths[order[end]] ** 2 <= max_attention
        ):
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest sequence: (input_ids, attention_mask), both int64."""
    longest = max(len(s) for s in sequences)
    input_ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return input_ids, mask


def _check_texts(texts: Sequence[str]) -> None:
    # A bare string is a Sequence[str] too: it would be embedded character by character.
    if isinstance(texts, str | bytes):
        raise TypeError("embed() takes a list of texts; wrap a single text as [text]")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")


def _resolve_version_dir(path: Path) -> Path:
    if (path / "manifest.json").is_file():
        return path
    if (path / "CURRENT").is_file():  # the encoder kind folder
        return registry.current_dir(path.parent, "encoder")
    if (path / "encoder" / "CURRENT").is_file():  # the models root
        return registry.current_dir(path, "encoder")
    raise registry.ModelNotFoundError(
        f"no encoder at {path}: expected a version directory with manifest.json or a models "
        "root with encoder/CURRENT; build one with `kefu models build`"
    )
