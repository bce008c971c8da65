"""Numpy fine-tuning of the top encoder layers: gradients, masking, learning, storage, input checks.

All on tiny random layers (no model files): the hand-written backward pass is compared with
central finite differences in float64, and a synthetic task checks that training learns.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.models.finetune import (
    LAYER_FIELDS,
    TunedLayers,
    fine_tune,
    loss_and_grads,
    stack_states,
)
from services.models.onnx_graph import LayerWeights


def random_layer(rng: np.random.Generator, hidden: int, ffn: int, std: float = 0.3) -> LayerWeights:
    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    def vec(n: int, centre: float = 0.0) -> np.ndarray:
        return (centre + rng.standard_normal(n) * 0.1).astype(np.float32)

    h, f = hidden, ffn
    return LayerWeights(
        q_w=mat(h, h), q_b=vec(h), k_w=mat(h, h), k_b=vec(h), v_w=mat(h, h), v_b=vec(h),
        attn_out_w=mat(h, h), attn_out_b=vec(h), attn_ln_w=vec(h, 1.0), attn_ln_b=vec(h),
        ffn_in_w=mat(f, h), ffn_in_b=vec(f), ffn_out_w=mat(h, f), ffn_out_b=vec(h),
        out_ln_w=vec(h, 1.0), out_ln_b=vec(h),
    )  # fmt: skip


def tiny_model(seed: int = 0, hidden: int = 8, ffn: int = 16, classes: int = 3) -> TunedLayers:
    rng = np.random.default_rng(seed)
    return TunedLayers(
        layers=[random_layer(rng, hidden, ffn) for _ in range(2)],
        num_heads=2,
        eps=1e-12,
        head_w=(rng.standard_normal((classes, hidden)) * 0.5).astype(np.float32),
        head_b=(rng.standard_normal(classes) * 0.1).astype(np.float32),
        scale=3.0,
    )


def to_float64(model: TunedLayers) -> TunedLayers:
    return TunedLayers(
        layers=[
            LayerWeights(**{n: getattr(la, n).astype(np.float64) for n in LAYER_FIELDS})
            for la in model.layers
        ],
        num_heads=model.num_heads,
        eps=model.eps,
        head_w=model.head_w.astype(np.float64),
        head_b=model.head_b.astype(np.float64),
        scale=model.scale,
    )


def test_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(1)
    model = to_float64(tiny_model())
    model.eps = 1e-5  # a realistic eps keeps the LayerNorm well conditioned for differencing
    states, mask = stack_states([rng.standard_normal((n, 8)) for n in (5, 3, 2)])
    states = states.astype(np.float64)
    y = np.array([0, 2, 1])

    def loss() -> float:
        return loss_and_grads(model, states, mask, y, label_smoothing=0.1, dtype=np.float64)[0]

    _, grads = loss_and_grads(model, states, mask, y, label_smoothing=0.1, dtype=np.float64)
    tensors = [
        (f"layer{i}.{n}", getattr(model.layers[i], n), getattr(grads.layers[i], n))
        for i in range(2)
        for n in LAYER_FIELDS
    ]
    tensors += [("head_w", model.head_w, grads.head_w), ("head_b", model.head_b, grads.head_b)]
    assert len(tensors) == 34
    step = 1e-6
    for name, param, grad in tensors:
        assert grad.shape == param.shape, name
        flat, gflat = param.reshape(-1), grad.reshape(-1)
        for j in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            old = flat[j]
            flat[j] = old + step
            up = loss()
            flat[j] = old - step
            down = loss()
            flat[j] = old
            numeric = (up - down) / (2 * step)
            # relative error, with an absolute floor for k_b (exactly 0: softmax ignores it)
            bound = 1e-4 * max(abs(numeric), abs(gflat[j])) + 1e-8
            assert abs(numeric - gflat[j]) < bound, (name, j, numeric, gflat[j])


def test_padding_does_not_change_logits() -> None:
    rng = np.random.default_rng(2)
    model = tiny_model(3)
    examples = [rng.standard_normal((n, 8)).astype(np.float32) for n in (4, 9, 1)]
    batch, mask = stack_states(examples)
    together = model.logits(batch, mask)
    for i, ex in enumerate(examples):
        alone = model.logits(ex[None], np.ones((1, len(ex)), dtype=np.int64))
        np.testing.assert_allclose(alone[0], together[i], atol=1e-5)
    pooled = model.pooled(batch.astype(np.float16), mask.astype(bool))
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)


def synthetic_task(
    rng: np.random.Generator, n: int, hidden: int, classes: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each example is noise tokens plus one marker token; the marker decides the class."""
    markers = np.random.default_rng(99).standard_normal((classes, hidden)) * 1.5
    states, labels = [], []
    for _ in range(n):
        c = int(rng.integers(classes))
        length = int(rng.integers(3, 12))
        tokens = rng.standard_normal((length, hidden))
        tokens[rng.integers(length)] += markers[c]
        states.append(tokens.astype(np.float16))
        labels.append(c)
    return states, np.array(labels)


def test_fine_tune_learns_and_round_trips() -> None:
    rng = np.random.default_rng(4)
    hidden, classes = 16, 4
    layers = [random_layer(rng, hidden, 32, std=0.2) for _ in range(2)]
    before = [getattr(la, n).copy() for la in layers for n in LAYER_FIELDS]
    x, y = synthetic_task(rng, 600, hidden, classes)
    vx, vy = synthetic_task(rng, 200, hidden, classes)
    seen: list[int] = []
    lines: list[str] = []
    model, history = fine_tune(
        x, y, layers, 4, 1e-12, classes, vx, vy,
        epochs=6, lr=3e-3, head_lr=1e-2, seed=0, progress=seen.append, log=lines.append,
    )  # fmt: skip
    assert sum(seen) == len(x) * len(history)
    assert len(lines) == len(history)
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert set(history[0]) == {"epoch", "loss", "val_accuracy", "seconds"}
    # the inputs are left alone
    after = [getattr(la, n) for la in layers for n in LAYER_FIELDS]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))

    vb, vm = stack_states(vx)
    acc = float((model.logits(vb, vm).argmax(axis=1) == vy).mean())
    assert acc > 0.6  # chance is 0.25
    assert acc == pytest.approx(max(h["val_accuracy"] for h in history))

    arrays = model.to_arrays("intent.")
    assert all(k.startswith("intent.") for k in arrays)
    restored = TunedLayers.from_arrays(arrays, "intent.")
    np.testing.assert_array_equal(restored.logits(vb, vm), model.logits(vb, vm))
    with pytest.raises(ValueError, match="no fine-tuned layers"):
        TunedLayers.from_arrays(arrays, "other.")


def test_bad_input_raises() -> None:
    rng = np.random.default_rng(5)
    layers = [random_layer(rng, 8, 16)]
    x = [rng.standard_normal((3, 8)).astype(np.float32) for _ in range(4)]
    y = np.array([0, 1, 0, 1])

    def run(**kw: object) -> None:
        args: dict[str, object] = {
            "states": x, "y": y, "init_layers": layers, "num_heads": 2, "eps": 1e-12,
            "n_classes": 2, "val_states": x, "val_y": y, "epochs": 1,
        }  # fmt: skip
        args.update(kw)
        fine_tune(**args)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="labels have shape"):
        run(y=y[:3])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        run(y=np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="no training examples"):
        run(states=[], y=np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="no validation examples"):
        run(val_states=[], val_y=np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="expected"):
        run(states=[*x[:3], np.zeros((3, 5))])
    with pytest.raises(ValueError, match="not divisible"):
        run(num_heads=3)
    with pytest.raises(ValueError, match="no layers"):
        run(init_layers=[])
    with pytest.raises(ValueError, match="no examples"):
        stack_states([])


def test_stops_after_an_epoch_without_improvement() -> None:
    rng = np.random.default_rng(6)
    layers = [random_layer(rng, 16, 32)]
    x, y = synthetic_task(rng, 64, 16, 3)
    # zero learning rates: validation accuracy cannot improve after the first epoch
    model, history = fine_tune(x, y, layers, 4, 1e-12, 3, x, y, epochs=5, lr=0.0, head_lr=0.0)
    assert len(history) == 2
    assert history[0]["val_accuracy"] == history[1]["val_accuracy"]
    np.testing.assert_array_equal(model.layers[0].q_w, layers[0].q_w)
