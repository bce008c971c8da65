"""Fine-tune the top K layers of the sentence encoder plus a linear head, in numpy (no torch).

Why: a frozen encoder with a head on its pooled vector caps intent accuracy; letting the last
few layers adapt helps most of what full fine-tuning gives, at a fraction of the cost. The
lower encoder (the "trunk") stays frozen, so its hidden states after layer L-K are computed
once (by the ONNX trunk, elsewhere) and these K layers are trained on them here.

The forward pass reproduces one layer of ``onnx_graph.build_encoder_graph`` exactly (post
LayerNorm BERT: Q/K/V, scaled dot product with an additive ``MASK_FILL`` mask, softmax, output
projection, residual + LayerNorm, erf GELU FFN, residual + LayerNorm), followed by mean pooling
over the attention mask (special tokens included) and L2 normalisation, as the graph does. The
backward pass is written by hand; ``loss_and_grads`` exposes it so tests can check it against
finite differences.

Services only need ``TunedLayers.logits`` (numpy forward) and ``from_arrays``; no optimiser
state is stored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from services.models.onnx_graph import MASK_FILL, LayerWeights

LAYER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LayerWeights))
# Matrices get weight decay; biases and LayerNorm parameters do not (the usual BERT recipe).
DECAYED_FIELDS = frozenset({"q_w", "k_w", "v_w", "attn_out_w", "ffn_in_w", "ffn_out_w"})
WARMUP_FRACTION = 0.06
EVAL_BATCH = 64
_NORM_FLOOR = 1e-12  # as the graph's L2 normalisation: Max(norm, 1e-12)
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _copy_layer(layer: LayerWeights, dtype: Any = np.float32) -> LayerWeights:
    """A deep copy in ``dtype`` (training must never write into the caller's weights)."""
    return LayerWeights(
        **{name: np.array(getattr(layer, name), dtype=dtype, copy=True) for name in LAYER_FIELDS}
    )


def _cast_layer(layer: LayerWeights, dtype: Any) -> LayerWeights:
    """A view in ``dtype`` where it already is, a copy otherwise (read-only use)."""
    return LayerWeights(
        **{name: np.asarray(getattr(layer, name), dtype=dtype) for name in LAYER_FIELDS}
    )


@dataclass
class TunedLayers:
    """The fine-tuned top layers and the intent head: what a service loads to classify."""

    layers: list[LayerWeights]  # fine-tuned copies of the top K layers, float32
    num_heads: int
    eps: float
    head_w: np.ndarray  # [n_classes, hidden]
    head_b: np.ndarray  # [n_classes]
    # logits = scale * (pooled @ head_w.T) + head_b: a cosine classifier needs a temperature
    scale: float = 20.0
    # onnxruntime session of the served (int8) computation, built on first use by ``fast_logits``
    _session: Any = field(default=None, init=False, repr=False, compare=False)
    _int8_graph: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def hidden(self) -> int:
        return int(self.head_w.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.head_w.shape[0])

    def pooled(self, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run the K layers on trunk states [b, s, hidden] (mask [b, s], 1 = token) and return
        the L2-normalised mean over the unmasked tokens, [b, hidden] float32."""
        if not self.layers:
            raise ValueError(
                "these tuned layers were loaded for serving (onnxruntime only): load the "
                "intent model without serving=True to run or save them in numpy"
            )
        x, m = _check_batch(states, mask, self.hidden)
        pooled, _ = _forward(self, x, m, np.float32, keep=False)
        return pooled

    def logits(self, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Class scores [b, n_classes] for trunk states [b, s, hidden]."""
        pooled = self.pooled(states, mask)
        head_w = np.asarray(self.head_w, dtype=np.float32)
        out: np.ndarray = np.float32(self.scale) * (pooled @ head_w.T) + np.asarray(
            self.head_b, dtype=np.float32
        )
        return out

    def fast_logits(self, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``logits`` through onnxruntime with int8 weights: what the nlu stage runs (numpy's
        many small operations cost about 2.5 ms more per message at batch 1, measured). The
        session comes from ``load_graph`` or, for a model not saved yet, from ``int8_graph``,
        so calibration after training sees the logits that will be served."""
        from services.models.onnx_graph import ATTENTION_MASK, TUNED_INPUT, TUNED_OUTPUT

        x, m = _check_batch(states, mask, self.hidden)
        if self._session is None:
            self._session = _session(self.int8_graph())
        (out,) = self._session.run(
            [TUNED_OUTPUT],
            {  # no copies when the batch already has these types (stack_states gives them)
                TUNED_INPUT: np.asarray(x, dtype=np.float32),
                ATTENTION_MASK: np.asarray(m, dtype=np.int64),
            },
        )
        return np.asarray(out, dtype=np.float32)

    def logits_per_text(self, states: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """``fast_logits`` for per-text states [tokens_i, hidden], in length-sorted batches
        bounded like the encoder's: padding and attention stay small (one call on 300 texts
        of mixed length peaked at +300 MB RSS)."""
        from services.models.encoder import length_sorted_batches

        logits = np.empty((len(states), self.n_classes), dtype=np.float32)
        for batch in length_sorted_batches([len(s) for s in states], batch_size):
            hidden, mask = stack_states([states[int(i)] for i in batch])
            logits[batch] = self.fast_logits(hidden, mask)
        return logits

    def graph(self) -> Any:
        """The ONNX model (``onnx.ModelProto``) of these layers + pooling + head."""
        from services.models.onnx_graph import build_tuned_layers_graph

        return build_tuned_layers_graph(
            self.layers, self.num_heads, self.eps, self.head_w, self.head_b, self.scale
        )

    def int8_graph(self) -> bytes:
        """``graph`` with dynamically quantised int8 weights (per channel, 7-bit like the
        encoder's), serialised. Four tuned layers on Bitext dev + CLINC OOS dev: 99.4 % of
        predictions equal fp32's, accuracy and OOS recall within noise, 4.7 -> 3.0 ms per call
        at batch 1 and a smaller onnxruntime session (docs/benchmarks.md)."""
        if self._int8_graph is None:
            import tempfile

            from services.models.onnx_graph import quantize_int8

            with tempfile.TemporaryDirectory(prefix="kefu-tuned-") as tmp:
                fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
                fp32.write_bytes(self.graph().SerializeToString())
                quantize_int8(fp32, int8)
                self._int8_graph = int8.read_bytes()
        return self._int8_graph

    def save_graph(self, path: Path) -> None:
        path.write_bytes(self.int8_graph())

    def load_graph(self, path: Path) -> None:
        """Serve ``fast_logits`` from a saved graph: loading the file costs ~40 MB less RSS
        than building the graph in the service (measured with bench.nlu_memory)."""
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the model version is incomplete")
        self._session = _session(str(path))

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Flat named arrays for ``np.savez`` (no pickle); ``prefix`` is prepended literally."""
        arrays: dict[str, np.ndarray] = {
            f"{prefix}num_layers": np.array(len(self.layers), dtype=np.int64),
            f"{prefix}num_heads": np.array(self.num_heads, dtype=np.int64),
            f"{prefix}eps": np.array(self.eps, dtype=np.float64),
            f"{prefix}scale": np.array(self.scale, dtype=np.float64),
            f"{prefix}head_w": np.asarray(self.head_w, dtype=np.float32),
            f"{prefix}head_b": np.asarray(self.head_b, dtype=np.float32),
        }
        for i, layer in enumerate(self.layers):
            for name in LAYER_FIELDS:
                arrays[f"{prefix}layer{i}.{name}"] = np.asarray(
                    getattr(layer, name), dtype=np.float32
                )
        return arrays

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray] | Any, prefix: str, *, with_layers: bool = True
    ) -> TunedLayers:
        """Inverse of ``to_arrays`` (also reads an open ``np.load`` archive, which reads an
        array only when asked: ``with_layers=False`` never reads the layers, for a service that
        runs the saved graph)."""
        if f"{prefix}num_layers" not in arrays:
            raise ValueError(f"no fine-tuned layers named {prefix}* in the model file")
        k = int(arrays[f"{prefix}num_layers"]) if with_layers else 0
        layers = [
            LayerWeights(
                **{
                    name: np.asarray(arrays[f"{prefix}layer{i}.{name}"], dtype=np.float32)
                    for name in LAYER_FIELDS
                }
            )
            for i in range(k)
        ]
        return cls(
            layers=layers,
            num_heads=int(arrays[f"{prefix}num_heads"]),
            eps=float(arrays[f"{prefix}eps"]),
            head_w=np.asarray(arrays[f"{prefix}head_w"], dtype=np.float32),
            head_b=np.asarray(arrays[f"{prefix}head_b"], dtype=np.float32),
            scale=float(arrays[f"{prefix}scale"]),
        )


@dataclass
class TuneStart:
    """Where fine-tuning starts: the encoder's own top layers and the layer feeding them."""

    layers: list[LayerWeights]
    num_heads: int
    eps: float
    from_layer: int  # token states after this many layers are the tuned layers' input


@dataclass
class Gradients:
    """Gradients of the loss, shaped like the parameters of ``TunedLayers``."""

    layers: list[LayerWeights]
    head_w: np.ndarray
    head_b: np.ndarray


def stack_states(states: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pad per-example [s_i, hidden] arrays to [b, max_s, hidden] float32 + mask [b, max_s] int64.

    Padding rows are zeros; the mask keeps them out of attention and pooling.
    """
    if len(states) == 0:
        raise ValueError("no examples to stack")
    arrays = [np.asarray(s) for s in states]
    for i, a in enumerate(arrays):
        if a.ndim != 2:
            raise ValueError(f"example {i} has shape {a.shape}, expected [tokens, hidden]")
    hidden = arrays[0].shape[1]
    for i, a in enumerate(arrays):
        if a.shape[1] != hidden:
            raise ValueError(f"example {i} has hidden size {a.shape[1]}, expected {hidden}")
    max_s = max(a.shape[0] for a in arrays)
    out = np.zeros((len(arrays), max_s, hidden), dtype=np.float32)
    mask = np.zeros((len(arrays), max_s), dtype=np.int64)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = 1
    return out, mask


def _session(model: str | bytes) -> Any:
    import onnxruntime as ort

    from services.models.encoder import default_threads, session_options

    return ort.InferenceSession(
        model, session_options(default_threads()), providers=["CPUExecutionProvider"]
    )


def _check_batch(
    states: np.ndarray, mask: np.ndarray, hidden: int
) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(states)
    m = np.asarray(mask)
    if x.ndim != 3 or x.shape[2] != hidden:
        raise ValueError(f"states have shape {x.shape}, expected [batch, tokens, {hidden}]")
    if m.shape != x.shape[:2]:
        raise ValueError(f"mask has shape {m.shape}, expected {x.shape[:2]}")
    return x, m


# --- forward / backward of one layer --------------------------------------------------------


def _layer_norm(
    r: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - mean) / sqrt(var + eps) * w + b over the last axis, as ONNX LayerNormalization."""
    mu = r.mean(axis=-1, keepdims=True)
    c = r - mu
    rstd = 1.0 / np.sqrt((c * c).mean(axis=-1, keepdims=True) + r.dtype.type(eps))
    xhat = c * rstd
    return xhat * w + b, xhat, rstd


def _layer_norm_back(
    dy: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d input, d weight, d bias) of ``_layer_norm``; rows are [n, hidden]."""
    dxhat = dy * w
    dr = rstd * (
        dxhat
        - dxhat.mean(axis=-1, keepdims=True)
        - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
    )
    return dr, (dy * xhat).sum(axis=0), dy.sum(axis=0)


@dataclass
class _LayerCache:
    x: np.ndarray  # [n, h] layer input (rows = batch * tokens)
    q: np.ndarray  # [b, heads, s, d]
    k: np.ndarray
    v: np.ndarray
    probs: np.ndarray  # [b, heads, s, s]
    ctx: np.ndarray  # [n, h]
    xhat1: np.ndarray
    rstd1: np.ndarray
    x1: np.ndarray
    hpre: np.ndarray  # [n, ffn] before GELU
    erf_v: np.ndarray
    gelu: np.ndarray
    xhat2: np.ndarray
    rstd2: np.ndarray


def _layer_forward(
    x: np.ndarray,
    add_mask: np.ndarray,
    p: LayerWeights,
    num_heads: int,
    eps: float,
    *,
    keep: bool,
) -> tuple[np.ndarray, _LayerCache | None]:
    """One post-LN BERT layer on x [b, s, h]; add_mask [b, s] is 0 or MASK_FILL."""
    b, s, h = x.shape
    d = h // num_heads
    dt = x.dtype.type
    x2 = x.reshape(b * s, h)
    w_qkv = np.concatenate([p.q_w, p.k_w, p.v_w], axis=0)
    b_qkv = np.concatenate([p.q_b, p.k_b, p.v_b])
    qkv = (x2 @ w_qkv.T + b_qkv).reshape(b, s, 3, num_heads, d).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = np.matmul(q, k.swapaxes(-1, -2)) / dt(math.sqrt(d))
    scores += add_mask[:, None, None, :]
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    ctx = np.matmul(probs, v).transpose(0, 2, 1, 3).reshape(b * s, h)
    attn = ctx @ p.attn_out_w.T + p.attn_out_b
    x1, xhat1, rstd1 = _layer_norm(attn + x2, p.attn_ln_w, p.attn_ln_b, eps)
    hpre = x1 @ p.ffn_in_w.T + p.ffn_in_b
    from scipy.special import erf  # here: the nlu stage never needs scipy (~20 MB RSS)

    erf_v = erf(hpre / dt(_SQRT2)).astype(x.dtype, copy=False)
    gelu = dt(0.5) * hpre * (dt(1.0) + erf_v)
    out = gelu @ p.ffn_out_w.T + p.ffn_out_b
    y, xhat2, rstd2 = _layer_norm(out + x1, p.out_ln_w, p.out_ln_b, eps)
    cache = (
        _LayerCache(x2, q, k, v, probs, ctx, xhat1, rstd1, x1, hpre, erf_v, gelu, xhat2, rstd2)
        if keep
        else None
    )
    return y.reshape(b, s, h), cache


def _layer_backward(
    dy: np.ndarray, c: _LayerCache, p: LayerWeights, num_heads: int
) -> tuple[np.ndarray, LayerWeights]:
    """Gradient w.r.t. the layer input [n, h] and all 16 layer parameters, from dy [n, h]."""
    b, heads, s, d = c.q.shape
    h = heads * d
    dt = dy.dtype.type
    g: dict[str, np.ndarray] = {}
    dr2, g["out_ln_w"], g["out_ln_b"] = _layer_norm_back(dy, c.xhat2, c.rstd2, p.out_ln_w)
    g["ffn_out_w"] = dr2.T @ c.gelu
    g["ffn_out_b"] = dr2.sum(axis=0)
    dgelu = dr2 @ p.ffn_out_w
    dhpre = dgelu * (
        dt(0.5) * (dt(1.0) + c.erf_v)
        + c.hpre * np.exp(dt(-0.5) * c.hpre * c.hpre) * dt(_INV_SQRT_2PI)
    )
    g["ffn_in_w"] = dhpre.T @ c.x1
    g["ffn_in_b"] = dhpre.sum(axis=0)
    dx1 = dr2 + dhpre @ p.ffn_in_w
    dr1, g["attn_ln_w"], g["attn_ln_b"] = _layer_norm_back(dx1, c.xhat1, c.rstd1, p.attn_ln_w)
    g["attn_out_w"] = dr1.T @ c.ctx
    g["attn_out_b"] = dr1.sum(axis=0)
    dctx = (dr1 @ p.attn_out_w).reshape(b, s, heads, d).transpose(0, 2, 1, 3)
    dprobs = np.matmul(dctx, c.v.swapaxes(-1, -2))
    dv = np.matmul(c.probs.swapaxes(-1, -2), dctx)
    dscores = c.probs * (dprobs - (dprobs * c.probs).sum(axis=-1, keepdims=True))
    dscores /= dt(math.sqrt(d))
    dq = np.matmul(dscores, c.k)
    dk = np.matmul(dscores.swapaxes(-1, -2), c.q)
    dqkv = np.stack([dq, dk, dv]).transpose(1, 3, 0, 2, 4).reshape(b * s, 3 * h)
    dw_qkv = dqkv.T @ c.x
    db_qkv = dqkv.sum(axis=0)
    for j, name in enumerate(("q", "k", "v")):
        g[f"{name}_w"] = dw_qkv[j * h : (j + 1) * h]
        g[f"{name}_b"] = db_qkv[j * h : (j + 1) * h]
    w_qkv = np.concatenate([p.q_w, p.k_w, p.v_w], axis=0)
    dx = dr1 + dqkv @ w_qkv
    return dx, LayerWeights(**g)


# --- whole model ------------------------------------------------------------------------------


@dataclass
class _Cache:
    layers: list[_LayerCache]
    x_top: np.ndarray  # [b, s, h] output of the last layer
    mask_f: np.ndarray  # [b, s, 1]
    counts: np.ndarray  # [b, 1]
    denom: np.ndarray  # [b, 1] max(norm, floor)
    pooled: np.ndarray  # [b, h]


def _forward(
    model: TunedLayers, states: np.ndarray, mask: np.ndarray, dtype: Any, *, keep: bool
) -> tuple[np.ndarray, _Cache | None]:
    """Pooled vectors [b, h] (and the activations the backward pass needs when ``keep``)."""
    x = np.asarray(states, dtype=dtype)
    mask_f = (np.asarray(mask) != 0).astype(dtype)
    add_mask = (dtype(1.0) - mask_f) * dtype(MASK_FILL)
    caches: list[_LayerCache] = []
    for layer in model.layers:
        x, cache = _layer_forward(
            x, add_mask, _cast_layer(layer, dtype), model.num_heads, model.eps, keep=keep
        )
        if cache is not None:
            caches.append(cache)
    m3 = mask_f[:, :, None]
    counts = np.maximum(mask_f.sum(axis=1, keepdims=True), dtype(1.0))
    mean = (x * m3).sum(axis=1) / counts
    denom = np.maximum(np.sqrt((mean * mean).sum(axis=1, keepdims=True)), dtype(_NORM_FLOOR))
    pooled = (mean / denom).astype(dtype, copy=False)
    return pooled, (_Cache(caches, x, m3, counts, denom, pooled) if keep else None)


def loss_and_grads(
    model: TunedLayers,
    states: np.ndarray,
    mask: np.ndarray,
    y: np.ndarray,
    *,
    label_smoothing: float = 0.0,
    dtype: Any = np.float32,
) -> tuple[float, Gradients]:
    """Mean label-smoothed cross-entropy of a padded batch and its gradients (hand-written
    backward pass; ``dtype=np.float64`` for finite-difference checks)."""
    states, mask = _check_batch(states, mask, model.hidden)
    pooled, cache = _forward(model, states, mask, dtype, keep=True)
    assert cache is not None
    head_w = np.asarray(model.head_w, dtype=dtype)
    head_b = np.asarray(model.head_b, dtype=dtype)
    scale = dtype(model.scale)
    z = scale * (pooled @ head_w.T) + head_b
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    batch, n_classes = z.shape
    target = np.full((batch, n_classes), label_smoothing / n_classes, dtype=dtype)
    target[np.arange(batch), np.asarray(y, dtype=np.int64)] += dtype(1.0 - label_smoothing)
    loss = float(-(target * log_p).sum() / batch)

    dz = (np.exp(log_p) - target) / dtype(batch)
    d_head_w = scale * (dz.T @ pooled)
    d_head_b = dz.sum(axis=0)
    dpooled = scale * (dz @ head_w)
    # L2 normalisation: pooled = mean / max(|mean|, floor); the floor branch is constant.
    proj = (pooled * dpooled).sum(axis=1, keepdims=True)
    above = cache.denom > dtype(_NORM_FLOOR)
    dmean = np.where(above, dpooled - pooled * proj, dpooled) / cache.denom
    dx = (cache.mask_f * (dmean / cache.counts)[:, None, :]).astype(dtype, copy=False)
    b, s, h = dx.shape
    dx2 = dx.reshape(b * s, h)
    layer_grads: list[LayerWeights] = []
    for layer, lc in zip(reversed(model.layers), reversed(cache.layers), strict=True):
        dx2, lg = _layer_backward(dx2, lc, _cast_layer(layer, dtype), model.num_heads)
        layer_grads.append(lg)
    layer_grads.reverse()
    return loss, Gradients(layer_grads, d_head_w, d_head_b)


# --- training ---------------------------------------------------------------------------------


def _length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices sorted by length, cut into batches: similar lengths waste little padding."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _validate(
    states: Sequence[np.ndarray], y: np.ndarray, hidden: int, n_classes: int, what: str
) -> np.ndarray:
    if len(states) == 0:
        raise ValueError(f"no {what} examples")
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != len(states):
        raise ValueError(f"{len(states)} {what} examples but labels have shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} labels must be integer class ids, got {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"{what} labels must lie in [0, {n_classes}), got {labels.min()}..{labels.max()}"
        )
    for i, s in enumerate(states):
        shape = np.shape(s)
        if len(shape) != 2 or shape[1] != hidden or shape[0] < 1:
            raise ValueError(
                f"{what} example {i} has shape {shape}, expected [tokens>=1, {hidden}]"
            )
    return labels.astype(np.int64)


def _accuracy(
    model: TunedLayers, states: Sequence[np.ndarray], y: np.ndarray, batch_size: int
) -> float:
    lengths = np.array([len(s) for s in states])
    correct = 0
    for idx in _length_batches(lengths, batch_size):
        x, m = stack_states([states[i] for i in idx])
        correct += int((model.logits(x, m).argmax(axis=1) == y[idx]).sum())
    return correct / len(states)


def _copy_model(model: TunedLayers) -> TunedLayers:
    return TunedLayers(
        layers=[_copy_layer(layer) for layer in model.layers],
        num_heads=model.num_heads,
        eps=model.eps,
        head_w=model.head_w.copy(),
        head_b=model.head_b.copy(),
        scale=model.scale,
    )


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total`` (0-based step)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def fine_tune(
    states: Sequence[np.ndarray],
    y: np.ndarray,
    init_layers: Sequence[LayerWeights],
    num_heads: int,
    eps: float,
    n_classes: int,
    val_states: Sequence[np.ndarray],
    val_y: np.ndarray,
    *,
    epochs: int = 4,
    batch_size: int = 32,
    lr: float = 1e-4,
    head_lr: float = 3e-3,
    weight_decay: float = 0.01,
    label_smoothing: float = 0.1,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[TunedLayers, list[dict[str, float]]]:
    """Train copies of ``init_layers`` and a new head with AdamW on trunk states [s_i, hidden].

    Returns the epoch with the best validation accuracy (training stops after one epoch without
    improvement) and the per-epoch history {"epoch", "loss", "val_accuracy", "seconds"}.
    ``progress`` gets the number of training examples after each step; ``log`` one line per
    epoch.
    """
    if not init_layers:
        raise ValueError("no layers to fine-tune")
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    hidden = int(np.shape(init_layers[0].q_w)[0])
    if num_heads < 1 or hidden % num_heads:
        raise ValueError(f"hidden size {hidden} is not divisible by {num_heads} heads")
    labels = _validate(states, y, hidden, n_classes, "training")
    val_labels = _validate(val_states, val_y, hidden, n_classes, "validation")

    rng = np.random.default_rng(seed)
    model = TunedLayers(
        layers=[_copy_layer(layer) for layer in init_layers],
        num_heads=num_heads,
        eps=float(eps),
        head_w=(rng.standard_normal((n_classes, hidden)) * 0.02).astype(np.float32),
        head_b=np.zeros(n_classes, dtype=np.float32),
    )
    # flat parameter list (updated in place) with learning rate and decay per tensor
    params: list[tuple[np.ndarray, float, float]] = []
    for layer in model.layers:
        for name in LAYER_FIELDS:
            params.append(
                (getattr(layer, name), lr, weight_decay if name in DECAYED_FIELDS else 0.0)
            )
    params.append((model.head_w, head_lr, weight_decay))
    params.append((model.head_b, head_lr, 0.0))
    m1 = [np.zeros_like(p) for p, _, _ in params]
    m2 = [np.zeros_like(p) for p, _, _ in params]
    beta1, beta2, adam_eps = 0.9, 0.999, 1e-8

    batches = _length_batches(np.array([len(s) for s in states]), batch_size)
    total = epochs * len(batches)
    warmup = max(1, round(WARMUP_FRACTION * total))
    step = 0
    best: TunedLayers | None = None
    best_acc = -1.0
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        loss_sum = 0.0
        for bi in rng.permutation(len(batches)):
            idx = batches[bi]
            x, m = stack_states([states[i] for i in idx])
            loss, grads = loss_and_grads(model, x, m, labels[idx], label_smoothing=label_smoothing)
            loss_sum += loss * len(idx)
            flat = [getattr(g, name) for g in grads.layers for name in LAYER_FIELDS]
            flat += [grads.head_w, grads.head_b]
            step += 1
            factor = _lr_factor(step - 1, total, warmup)
            c1 = 1.0 - beta1**step
            c2 = 1.0 - beta2**step
            for j, ((p, base_lr, decay), g) in enumerate(zip(params, flat, strict=True)):
                rate = base_lr * factor
                m1[j] *= beta1
                m1[j] += (1.0 - beta1) * g
                m2[j] *= beta2
                m2[j] += (1.0 - beta2) * (g * g)
                if decay:
                    p *= np.float32(1.0 - rate * decay)
                p -= (rate / c1) * m1[j] / (np.sqrt(m2[j] / c2) + adam_eps)
            if progress is not None:
                progress(len(idx))
        acc = _accuracy(model, val_states, val_labels, EVAL_BATCH)
        seconds = time.perf_counter() - start
        mean_loss = loss_sum / len(states)
        history.append(
            {"epoch": float(epoch), "loss": mean_loss, "val_accuracy": acc, "seconds": seconds}
        )
        if log is not None:
            log(f"epoch {epoch}: loss {mean_loss:.4f}, val accuracy {acc:.4f}, {seconds:.1f}s")
        if acc > best_acc:
            best_acc, best = acc, _copy_model(model)
        else:
            break  # one epoch without improvement
    assert best is not None
    return best, history


def fine_tune_if_possible(
    start: TuneStart | None,
    states: Sequence[np.ndarray] | None,
    y: np.ndarray,
    val_states: Sequence[np.ndarray] | None,
    val_y: np.ndarray,
    n_classes: int,
    *,
    epochs: int,
    lr: float,
    seed: int,
    max_tokens: int | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[TunedLayers, list[dict[str, float]]] | None:
    """``fine_tune`` of ``start``'s layers when there is what it needs: epochs, a start, token
    states, and validation rows (early stopping needs them); None otherwise, and the caller
    trains a head on the frozen encoder. ``max_tokens`` caps the training texts' states."""
    if epochs < 1 or start is None or states is None or val_states is None or len(val_y) == 0:
        return None
    if max_tokens is not None:
        states = [s[:max_tokens] for s in states]
    return fine_tune(
        states, y, start.layers, start.num_heads, start.eps, n_classes, val_states, val_y,
        epochs=epochs, lr=lr, seed=seed, log=log, progress=progress,
    )  # fmt: skip
