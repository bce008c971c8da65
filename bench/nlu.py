"""Benchmark: the int8 ONNX encoder vs the transformers + PyTorch fp32 pipeline of the same model.

Both sides embed the same texts with the same thread count, tokenisation included, after a
warm-up, in two modes:

* batch 1: one text per call (what a stage does per message at low traffic);
* batched: all texts in batches of ``--batch-size``. The ONNX side is the production path,
  ``Encoder.embed``, which groups texts of similar length (one call per length-sorted batch);
  the PyTorch side is what a user of transformers writes: a plain loop over consecutive chunks
  in the given order, each tokenised with padding to its longest text.

The PyTorch side is transformers' standard usage: a fast tokenizer (``PreTrainedTokenizerFast``,
what ``AutoTokenizer`` returns) on the encoder's own ``tokenizer.json``, ``BertModel`` in float32
with the weights the ONNX graph was built from (dequantised, rows of the pruned vocabulary),
``torch.inference_mode()``, mean pooling over the attention mask and L2 normalisation (the e5
recipe). torch is optional: without it that side is skipped with a notice. Never install torch
into the project's environment; use a separate one::

    uv venv /tmp/torchvenv --python 3.11 && uv pip install --python /tmp/torchvenv torch \
        transformers numpy tokenizers onnxruntime onnx psutil click tqdm safetensors
    PYTHONPATH=$PWD /tmp/torchvenv/bin/python -m bench.nlu [--n 500]

Figures per side and mode: texts/s, CPU ms per text, p50/p99 latency per call; peak RSS before
and after PyTorch is loaded; the ONNX/PyTorch throughput ratios. The LAST line printed is one
JSON object. Nothing here needs Faust (it runs in a torch environment without the project's
service dependencies).

    kefu bench nlu [--texts FILE] [--n 500]      # or: python -m bench.nlu
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench.machine import machine
from services.models import registry
from services.models.build_encoder import EncoderBuildError, source_weights
from services.models.encoder import (
    QUERY_PREFIX,
    TOKENIZER_FILE,
    Encoder,
    default_threads,
    length_sorted_batches,
)

WARMUP_CALLS = 5  # first calls pay for lazy initialisation (oneDNN, thread pools, allocations)
ROUNDS = 4  # the two sides alternate in this many blocks (see time_sides)

# Realistic short customer messages, zh and en (not the build's check sample).
DEFAULT_TEXTS: tuple[str, ...] = (
    "hi, is anyone there?",
    "Where's my package? Tracking hasn't updated since Monday.",
    "I need to cancel my order, I bought it by mistake.",
    "Can I change the delivery address to my office?",
    "How much is shipping to Germany?",
    "I got the wrong item, I ordered a blue one.",
    "The zipper broke on the first day.",
    "When will I get my money back?",
    "Do you accept Klarna?",
    "My payment failed but the money left my account.",
    "I can't log in to my account.",
    "How do I change my email address?",
    "Please close my account.",
    "I want to speak to a human.",
    "Is this available in size XL?",
    "Can I return an item I bought on sale?",
    "The discount code isn't working at checkout.",
    "How long is the warranty on this TV?",
    "I ordered two but only got one.",
    "The box was open when it arrived.",
    "Can you deliver before Friday? It's a gift.",
    "I was charged for express shipping but it came late.",
    "Do you have a physical store in London?",
    "What's the status of order 40021?",
    "I never received a confirmation email.",
    "Can I add something to my existing order?",
    "This is unacceptable, I've waited three weeks.",
    "Thank you so much, very helpful!",
    "How do I get an invoice for my company?",
    "Is it possible to pay on delivery?",
    "My coupon expired yesterday, can you extend it?",
    "The app shows my order as delivered but it's not here.",
    "How do I track my refund?",
    "I'd like to exchange these shoes for a bigger size.",
    "Are your products cruelty-free?",
    "Can I change the name on the order?",
    "Why is my account locked?",
    "I forgot my password and the reset link is broken.",
    "Stop sending me promotional emails.",
    "Do you ship to PO boxes?",
    "The charger doesn't fit the plug sockets here.",
    "What does 'pending' mean on my order?",
    "Can I get a price adjustment? It dropped $20 after I bought it.",
    "The courier was very rude to me.",
    "My parcel was left at the wrong house.",
    "I need this urgently, can you upgrade the shipping?",
    "Is there a student discount?",
    "Will the jacket be restocked in black?",
    "The colour looks different from the photos.",
    "How do I leave feedback about my order?",
    "Can I pick a delivery time slot?",
    "I moved, how do I update my default address?",
    "Do you offer gift wrapping?",
    "Can I cancel just one item from the order?",
    "The refund went to an old card, what now?",
    "I'm still waiting for the replacement you promised.",
    "ok",
    "thanks, bye",
    "Hello! Quick question about sizes.",
    "Is the battery included?",
    "你好，在吗？",
    "我的快递到哪了？三天没更新了",
    "我想取消订单，不想要了",
    "收货地址写错了，能改吗",
    "寄到北京要几天？",
    "发错货了，我要的是蓝色",
    "拉链第一天就坏了",
    "钱什么时候退给我？",
    "可以用信用卡分期吗",
    "付款失败了但是钱被扣了",
    "账号登录不上去",
    "怎么修改绑定的邮箱",
    "帮我把账号注销掉",
    "我要人工客服",
    "这个有XL码吗？",
    "打折买的东西可以退吗",
    "结算的时候优惠码用不了",
    "这台电视保修多久？",
    "我买了两件只收到一件",
    "收到的时候箱子是打开的",
    "周五之前能送到吗？是送人的礼物",
    "付了加急运费结果还是晚到了",
    "你们有实体店吗",
    "订单40021现在什么状态？",
    "一直没收到确认短信",
    "已经下单了还能加东西吗",
    "等了三个星期了，太过分了！",
    "非常感谢，帮了大忙！",
    "公司报销需要开发票",
    "可以货到付款吗？",
    "优惠券昨天过期了，能延长吗",
    "显示已签收但是我没收到",
    "退款进度在哪里看？",
    "鞋子小了，想换大一码",
    "能改一下订单上的收件人名字吗",
    "为什么我的账号被冻结了",
    "重置密码的链接打不开",
    "别再给我发广告短信了",
    "充电器插头不匹配",
    "订单显示待处理是什么意思",
    "买完就降价了，能补差价吗",
    "快递员态度很差",
    "包裹被放到别人家门口了",
    "急用，能升级成顺丰吗",
    "学生有优惠吗",
    "黑色的什么时候补货？",
    "实物颜色和图片差太多了",
    "怎么给订单写评价",
    "可以选送货时间吗",
    "搬家了，默认地址怎么改",
    "可以帮忙包装成礼物吗",
    "只取消订单里的一件可以吗",
    "退款退到旧卡上了怎么办",
    "说好的补发还没到",
    "好的",
    "谢谢，再见",
    "亲，尺码怎么选呀～",
    "电池是送的吗？",
    "质量很好，下次还会回购👍",
)


class BenchNluError(RuntimeError):
    """The benchmark cannot run (no encoder, bad texts file); the message says what to do."""


def load_texts(path: Path | None, n: int) -> list[str]:
    """``n`` texts: the file's non-empty lines (UTF-8, one text per line) or DEFAULT_TEXTS,
    repeated in order when ``n`` exceeds them."""
    if n < 1:
        raise BenchNluError(f"--n must be >= 1, got {n}")
    if path is None:
        base = list(DEFAULT_TEXTS)
    else:
        try:
            base = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except FileNotFoundError:
            raise BenchNluError(f"--texts {path}: no such file") from None
        except UnicodeDecodeError as exc:
            raise BenchNluError(f"--texts {path}: not UTF-8 ({exc.reason})") from None
        base = [t for t in base if t]
        if not base:
            raise BenchNluError(f"--texts {path}: no non-empty lines; put one text per line")
    return [base[i % len(base)] for i in range(n)]


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(seconds) * 1000.0, q)), 2)


def consecutive_chunks(texts: Sequence[str], size: int) -> list[list[str]]:
    """Batches in the given order, as a plain pipeline makes them (no sorting by length)."""
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


def sorted_groups(encoder: Encoder, texts: Sequence[str], batch_size: int) -> list[list[str]]:
    """The length-sorted batches ``Encoder.embed`` makes of ``texts`` (one call each)."""
    lengths = [len(x) for x in encoder.token_ids(texts)]
    return [[texts[i] for i in b] for b in length_sorted_batches(lengths, batch_size)]


Embed = Callable[[list[str]], np.ndarray]


def time_sides(
    sides: dict[str, tuple[Embed, Sequence[list[str]]]],
    rounds: int = ROUNDS,
    warmup: int = WARMUP_CALLS,
) -> dict[str, tuple[dict[str, float], list[np.ndarray]]]:
    """Time every side on its groups (one call per group), after ``warmup`` untimed calls.

    The sides take turns in ``rounds`` blocks (a quarter of each side's calls, then the next
    side's quarter, ...), so on a shared host whose load drifts both see the same conditions.
    Returns per side: texts/s (over the time spent in its calls), CPU ms per text, p50/p99
    latency per call, and the outputs in call order.
    """
    for embed, groups in sides.values():
        for group in groups[: max(1, warmup)]:
            embed(group)
    latencies: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, float] = dict.fromkeys(sides, 0.0)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in sides}
    for r in range(rounds):
        for name, (embed, groups) in sides.items():
            block = groups[r * len(groups) // rounds : (r + 1) * len(groups) // rounds]
            cpu_started = time.process_time()
            for group in block:
                t0 = time.perf_counter()
                outputs[name].append(embed(group))
                latencies[name].append(time.perf_counter() - t0)
            # CPU time of the whole process (all threads): steadier than wall time when busy
            cpu[name] += time.process_time() - cpu_started
    result: dict[str, tuple[dict[str, float], list[np.ndarray]]] = {}
    for name, (_, groups) in sides.items():
        n_texts = sum(len(g) for g in groups)
        figures = {
            "texts_per_s": round(n_texts / sum(latencies[name]), 1),
            "cpu_ms_per_text": round(cpu[name] * 1000.0 / n_texts, 2),
            "p50_ms": percentile_ms(latencies[name], 50),
            "p99_ms": percentile_ms(latencies[name], 99),
            "calls": len(groups),
        }
        result[name] = (figures, outputs[name])
    return result


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def rss_mb() -> float | None:
    """Current RSS (Linux /proc), or None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * resource.getpagesize() / 1024.0 / 1024.0, 1)


class TorchPipeline:
    """transformers' standard usage: fast tokenizer + BertModel fp32 + mean pooling."""

    def __init__(self, encoder: Encoder, threads: int) -> None:
        import torch
        from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

        torch.set_num_threads(threads)  # the ONNX session's intra-op threads
        # the ONNX session's inter-op threads; settable only before torch's first parallel work
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        version_dir = encoder.model_path.parent
        try:
            weights = source_weights(encoder)
        except EncoderBuildError as exc:
            raise BenchNluError(str(exc)) from None
        if weights.position_style != "bert":
            raise BenchNluError("the PyTorch side is built for BERT-style encoders only")
        config = BertConfig(
            vocab_size=int(weights.word_embeddings.shape[0]),
            hidden_size=weights.hidden,
            num_hidden_layers=len(weights.layers),
            num_attention_heads=weights.num_heads,
            intermediate_size=weights.ffn,
            hidden_act="gelu",
            max_position_embeddings=int(weights.position_embeddings.shape[0]),
            type_vocab_size=int(weights.token_type_embeddings.shape[0]),
            layer_norm_eps=weights.layer_norm_eps,
            pad_token_id=encoder.pad_id,
        )
        model = BertModel(config, add_pooling_layer=False)
        state = {
            k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _hf_state(weights).items()
        }
        missing, unexpected = model.load_state_dict(state, strict=False)
        real_missing = [k for k in missing if not k.endswith("position_ids")]
        if real_missing or unexpected:
            raise BenchNluError(f"state dict mismatch: missing {real_missing}, extra {unexpected}")
        self.model = model.eval()
        vocab = _vocab_of(version_dir / TOKENIZER_FILE)
        special = {"pad_token": vocab[encoder.pad_id]}
        self.tokenizer = PreTrainedTokenizerFast(
            tokenizer_file=str(version_dir / TOKENIZER_FILE),
            model_max_length=encoder.max_length,
            **special,
        )
        self._torch = torch

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self.tokenizer(
            [QUERY_PREFIX + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        )
        with torch.inference_mode():
            hidden = self.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        out: np.ndarray = pooled.numpy()
        return out


def _vocab_of(tokenizer_path: Path) -> dict[int, str]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    return {i: t for t, i in tokenizer.get_vocab(with_added_tokens=True).items()}


def _hf_state(w: Any) -> dict[str, np.ndarray]:
    """BertWeights under transformers' BertModel names."""
    state = {
        "embeddings.word_embeddings.weight": w.word_embeddings,
        "embeddings.position_embeddings.weight": w.position_embeddings,
        "embeddings.token_type_embeddings.weight": w.token_type_embeddings,
        "embeddings.LayerNorm.weight": w.emb_ln_w,
        "embeddings.LayerNorm.bias": w.emb_ln_b,
    }
    names = {
        "attention.self.query": ("q_w", "q_b"),
        "attention.self.key": ("k_w", "k_b"),
        "attention.self.value": ("v_w", "v_b"),
        "attention.output.dense": ("attn_out_w", "attn_out_b"),
        "attention.output.LayerNorm": ("attn_ln_w", "attn_ln_b"),
        "intermediate.dense": ("ffn_in_w", "ffn_in_b"),
        "output.dense": ("ffn_out_w", "ffn_out_b"),
        "output.LayerNorm": ("out_ln_w", "out_ln_b"),
    }
    for i, layer in enumerate(w.layers):
        for hf_name, (weight, bias) in names.items():
            state[f"encoder.layer.{i}.{hf_name}.weight"] = getattr(layer, weight)
            state[f"encoder.layer.{i}.{hf_name}.bias"] = getattr(layer, bias)
    return state


def mean_cosine(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    rows_a, rows_b = np.concatenate(list(a)), np.concatenate(list(b))
    return round(float((rows_a * rows_b).sum(axis=1).mean()), 5)


def run_nlu_bench(
    models_root: Path,
    texts: Sequence[str],
    threads: int | None = None,
    batch_size: int = 32,
    with_torch: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure both pipelines on ``texts``; returns the summary (the JSON line's content)."""
    try:
        version_dir = registry.current_dir(models_root, "encoder")
    except registry.ModelNotFoundError as exc:
        raise BenchNluError(str(exc)) from None
    threads = threads or default_threads()
    texts = list(texts)
    rss_start = peak_rss_mb()
    encoder = Encoder.load(version_dir, threads=threads)
    lengths = [len(x) for x in encoder.token_ids(texts)]
    singles = [[t] for t in texts]
    onnx_groups = sorted_groups(encoder, texts, batch_size)
    plain_groups = consecutive_chunks(texts, batch_size)
    host = machine()
    say(
        f"{len(texts)} texts, mean {np.mean(lengths):.1f} tokens (max {max(lengths)}), "
        f"{threads} threads, batch {batch_size}, encoder {version_dir.name} "
        f"({', '.join(encoder.providers)}, vocabulary {encoder.manifest.get('vocab')})"
    )
    say(
        f"CPU: {host['cpu_model']}, {host['cpus']} cores, int8 dot product: "
        f"{', '.join(host['int8_dot_product']) or 'none (no VNNI: int8 runs slower)'}"
    )

    def onnx_embed(group: list[str]) -> np.ndarray:
        return encoder.embed(group, batch_size=batch_size)

    # one untimed pass first: the ONNX-only process's peak RSS, before torch is loaded
    for group in [*singles, *onnx_groups]:
        onnx_embed(group)
    rss_onnx = peak_rss_mb()
    say(f"peak RSS with the ONNX encoder (before torch is loaded): {rss_onnx:.1f} MiB")
    summary: dict[str, Any] = {
        "bench": "nlu",
        "machine": host,
        "n": len(texts),
        "mean_tokens": round(float(np.mean(lengths)), 1),
        "threads": threads,
        "batch_size": batch_size,
        "encoder_version": version_dir.name,
        "encoder_vocab": encoder.manifest.get("vocab"),
        "providers": encoder.providers,
        "onnx_int8": None,
        "batching": {
            "onnx_int8": "Encoder.embed: length-sorted batches",
            "torch_fp32": "consecutive chunks in the given order, padded to the longest",
        },
        "torch_fp32": None,
        "ratio_onnx_over_torch": None,
        "peak_rss_mb_onnx": rss_onnx,
        "rss_mb_at_start": rss_start,
    }
    pipeline: TorchPipeline | None = None
    if not with_torch:
        summary["torch_skipped"] = "PyTorch side skipped (--no-torch)"
    else:
        rss_before_torch = rss_mb()
        try:
            pipeline = TorchPipeline(encoder, threads)
        except ImportError as exc:
            summary["torch_skipped"] = (
                f"PyTorch side skipped: {exc.name or exc} is not installed; run this benchmark with a "
                "separate environment that has torch and transformers (see bench/nlu.py)"
            )
        except BenchNluError as exc:
            summary["torch_skipped"] = f"PyTorch side skipped: {exc}"
        if pipeline is None:
            say(summary["torch_skipped"])

    modes = {"batch1": (singles, singles), "batched": (onnx_groups, plain_groups)}
    figures: dict[str, dict[str, Any]] = {"onnx_int8": {}, "torch_fp32": {}}
    outputs: dict[str, list[np.ndarray]] = {}
    for mode, (onnx_calls, torch_calls) in modes.items():
        sides: dict[str, tuple[Embed, Sequence[list[str]]]] = {
            "onnx_int8": (onnx_embed, onnx_calls)
        }
        if pipeline is not None:
            sides["torch_fp32"] = (pipeline.embed, torch_calls)
        for side, (side_figures, side_outputs) in time_sides(sides).items():
            figures[side][mode] = side_figures
            if mode == "batch1":
                outputs[side] = side_outputs
    summary["onnx_int8"] = figures["onnx_int8"]
    say(f"onnx int8   batch 1: {_fmt(figures['onnx_int8']['batch1'])}")
    say(
        f"onnx int8   batch {batch_size}, length-sorted (Encoder.embed): "
        f"{_fmt(figures['onnx_int8']['batched'])}"
    )
    if pipeline is not None:
        import torch
        import transformers

        torch_figures = figures["torch_fp32"]
        say(f"torch fp32  batch 1: {_fmt(torch_figures['batch1'])}")
        say(f"torch fp32  batch {batch_size}, given order: {_fmt(torch_figures['batched'])}")
        summary["torch_fp32"] = {
            **torch_figures,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "attn_implementation": getattr(pipeline.model.config, "_attn_implementation", None),
        }
        rss_after_torch = rss_mb()
        if rss_before_torch is not None and rss_after_torch is not None:
            summary["rss_mb_added_by_torch"] = round(rss_after_torch - rss_before_torch, 1)
        summary["cosine_onnx_int8_vs_torch_fp32"] = mean_cosine(
            outputs["onnx_int8"], outputs["torch_fp32"]
        )
        summary["ratio_onnx_over_torch"] = {
            mode: round(
                figures["onnx_int8"][mode]["texts_per_s"] / torch_figures[mode]["texts_per_s"], 2
            )
            for mode in modes
        }
        summary["cpu_ratio_torch_over_onnx"] = {
            mode: round(
                torch_figures[mode]["cpu_ms_per_text"]
                / figures["onnx_int8"][mode]["cpu_ms_per_text"],
                2,
            )
            for mode in modes
        }
        ratio = summary["ratio_onnx_over_torch"]
        say(
            f"ONNX int8 / PyTorch fp32 throughput: batch 1 {ratio['batch1']:.2f}x, "
            f"batched {ratio['batched']:.2f}x (CPU time per text: batch 1 "
            f"{summary['cpu_ratio_torch_over_onnx']['batch1']:.2f}x, batched "
            f"{summary['cpu_ratio_torch_over_onnx']['batched']:.2f}x); mean cosine "
            f"{summary['cosine_onnx_int8_vs_torch_fp32']:.4f}"
        )
    summary["peak_rss_mb"] = peak_rss_mb()
    return summary


def _fmt(f: dict[str, float]) -> str:
    return (
        f"{f['texts_per_s']:.1f} texts/s, p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms "
        f"per call, {f['cpu_ms_per_text']:.1f} CPU ms per text"
    )


@click.command("nlu")
@click.option(
    "--texts",
    "texts_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="UTF-8 file, one text per line (default: built-in bilingual customer messages).",
)
@click.option("--n", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Default min(2, cores).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--no-torch", is_flag=True, help="Only the ONNX encoder.")
def bench_nlu_cmd(
    texts_path: Path | None, n: int, threads: int | None, batch_size: int, no_torch: bool
) -> None:
    """Encoder throughput and latency: int8 ONNX vs transformers + PyTorch fp32."""
    from services.runtime.settings import SettingsError, load_settings

    try:
        root = load_settings().models_path
        texts = load_texts(texts_path, n)
        summary = run_nlu_bench(
            root, texts, threads, batch_size, not no_torch, say=lambda s: click.echo(s)
        )
    except (BenchNluError, SettingsError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(summary, ensure_ascii=False, sort_keys=True))


if __name__ == "__main__":
    sys.exit(bench_nlu_cmd())
