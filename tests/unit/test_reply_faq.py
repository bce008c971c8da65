"""FAQ files, the index and the threshold measurement, with a deterministic stand-in encoder."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from services.reply.faq import (
    FaqEntry,
    FaqError,
    FaqIndex,
    choose_threshold,
    holdout_split,
    load_faq_files,
    measure,
    question_pairs,
)


class CharGrams:
    """Character bigrams hashed into 512 dimensions: similar strings get similar vectors."""

    def __init__(self) -> None:
        self.prefixes: list[str] = []

    def embed(self, texts: Sequence[str], prefix: str = "passage: ") -> np.ndarray:
        self.prefixes.append(prefix)
        out = np.zeros((len(texts), 512), dtype=np.float32)
        for row, text in enumerate(texts):
            t = f" {text.lower()} "
            for a, b in itertools.pairwise(t):
                out[row, int(hashlib.md5((a + b).encode()).hexdigest(), 16) % 512] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


ENTRIES = [
    FaqEntry("faq-ship", "en", "How much is shipping?", ("is delivery free",), "Free over ¥99."),
    FaqEntry("faq-ship", "zh", "运费怎么收？", ("包邮吗",), "满99元包邮。"),
    FaqEntry(
        "faq-pay", "en", "Which payment methods?", ("can I pay with a card",), "Cards, Alipay."
    ),
    FaqEntry("faq-pay", "zh", "支持哪些支付方式？", ("能刷卡吗",), "支持银行卡和支付宝。"),
]


def test_the_shipped_faq_files_are_complete_and_bilingual() -> None:
    entries = load_faq_files()
    by_lang: dict[str, set[str]] = {}
    for e in entries:
        by_lang.setdefault(e.language, set()).add(e.id)
        assert e.answer and e.question and e.alt_questions, e.id
    assert set(by_lang) == {"zh", "en"}
    assert by_lang["zh"] == by_lang["en"] and len(by_lang["zh"]) >= 40


def test_the_faq_states_the_cancellation_rules_orderservice_applies() -> None:
    """The FAQ once said cancelling was always free while the bot, from the same rules as
    OrderService, quoted a 5 % fee for the same order."""
    from services.orders.rules import (
        CANCELLATION_FEE_CAP_CENTS,
        CANCELLATION_FEE_PERCENT,
        FREE_CANCELLATION_HOURS,
        RETURN_WINDOW_DAYS,
    )
    from services.reply.templates import INTENT_ANSWERS

    answers = [e.answer for e in load_faq_files() if e.id == "faq-cancel-fee"]
    assert len(answers) == 2
    # and the template the bot answers with when no FAQ entry matches
    answers += [t for lang in ("zh", "en") for t in INTENT_ANSWERS["check_cancellation_fee"][lang]]
    for answer in answers:
        assert str(FREE_CANCELLATION_HOURS) in answer and f"{CANCELLATION_FEE_PERCENT}%" in answer
        assert str(CANCELLATION_FEE_CAP_CENTS // 100) in answer
        assert str(RETURN_WINDOW_DAYS) in answer


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"en.yaml": "- {id: a, question: q}"}, "'answer' must be a non-empty string"),
        (
            {"en.yaml": "- {id: a, question: q, answer: x}\n- {id: a, question: q, answer: y}"},
            "duplicate id",
        ),
        (
            {
                "en.yaml": "- {id: a, question: q, answer: x}",
                "zh.yaml": "- {id: b, question: q, answer: x}",
            },
            "each entry must exist in every language",
        ),
        ({"en.yaml": "id: [unclosed"}, "not valid YAML"),
        ({"fr.yaml": "- {id: a, question: q, answer: x}"}, "must be a language"),
        ({"en.yaml": "- {id: a, question: q, answer: x, alt_questions: q2}"}, "must be a list"),
    ],
)
def test_malformed_faq_files_say_what_to_fix(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        _write(tmp_path, name, text)
    with pytest.raises(FaqError, match=message):
        load_faq_files(tmp_path)


def test_no_faq_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FaqError, match="no FAQ files"):
        load_faq_files(tmp_path)


def test_index_answers_in_the_customers_language_above_the_threshold_only() -> None:
    embedder = CharGrams()
    index = FaqIndex(ENTRIES, embedder, ("query: ", "query: "), threshold=0.9)
    hit = index.lookup("How much is shipping?", "zh")
    assert hit is not None and hit.faq_id == "faq-ship" and hit.language == "zh"
    assert hit.answer == "满99元包邮。" and hit.score > 0.99
    assert index.lookup("what is the meaning of life", "en") is None
    assert set(embedder.prefixes) == {"query: "}


def test_a_lookup_among_named_entries_takes_their_best_at_its_own_threshold() -> None:
    index = FaqIndex(ENTRIES, CharGrams(), ("query: ", "query: "), threshold=0.99)
    vector = index.embed_query("How much is shipping by card?")
    best, best_score = index.nearest(vector)
    among, among_score = index.nearest(vector, among={"faq-pay"})
    assert best == "faq-ship" and among == "faq-pay" and among_score < best_score
    assert index.lookup_vector(vector, "en") is None  # under the general threshold
    hit = index.lookup_vector(vector, "en", threshold=among_score - 0.01, among={"faq-pay"})
    assert hit is not None and hit.faq_id == "faq-pay" and hit.answer == "Cards, Alipay."
    assert (
        index.lookup_vector(vector, "en", threshold=among_score + 0.01, among={"faq-pay"}) is None
    )


def test_holdout_split_keeps_the_held_out_question_out_of_the_index() -> None:
    indexed, held = holdout_split(ENTRIES)
    assert len(held) == len(ENTRIES)
    assert ("faq-ship", "is delivery free") in held
    assert ("faq-ship", "is delivery free") not in indexed
    assert ("faq-ship", "How much is shipping?") in indexed


def test_choose_threshold_prefers_precision() -> None:
    positives = [(True, 0.95), (True, 0.93), (False, 0.91), (True, 0.90)]
    negatives = [0.80, 0.85, 0.905]
    best = choose_threshold(positives, negatives)
    assert best["threshold"] == pytest.approx(0.915, abs=0.011)
    assert best["precision"] == 1.0 and best["recall"] == 0.5


def test_measure_reports_both_prefix_schemes() -> None:
    result = measure(ENTRIES, CharGrams(), ["completely unrelated words"])
    assert result["queries"] == 4 and result["negatives"] == 1
    for scheme in ("query-query", "query-passage"):
        assert 0.0 <= result[scheme]["top1_accuracy"] <= 1.0
        assert "threshold" in result[scheme]["best"]


def test_the_faq_query_leaves_out_order_ids() -> None:
    from services.reply.decide import EntityRef, Turn
    from services.reply.faq import without_order_ids

    turn = Turn(
        "m1",
        "c1",
        "u1001",
        "订单3336233058的发票抬头写错了能改吗",
        "订单3336233058的发票抬头写错了能改吗",
        "zh",
        entities=(EntityRef("order_id", "3336233058", "3336233058"),),
    )
    assert without_order_ids(turn) == "订单 的发票抬头写错了能改吗"
    plain = Turn("m2", "c1", "u1001", "发票能重开吗", "发票能重开吗", "zh")
    assert without_order_ids(plain) == "发票能重开吗"  # unchanged: nlu's vector is reused


def test_a_second_faq_query_names_the_products_generically() -> None:
    from services.reply.decide import EntityRef, Turn
    from services.reply.faq import with_products_as_item

    text = "is the Bamboo Cutting Board in stock?"
    turn = Turn(
        "m1",
        "c1",
        "u2001",
        text,
        text,
        "en",
        entities=(EntityRef("product", "Bamboo Cutting Board", "P1", 0.6),),
    )
    assert with_products_as_item(turn, text) == "is this item in stock?"
    zh = "竹制砧板还有货吗"
    turn = Turn(
        "m2", "c1", "u1001", zh, zh, "zh", entities=(EntityRef("product", "竹制砧板", "P1"),)
    )
    assert with_products_as_item(turn, zh) == "这个商品还有货吗"


def test_question_pairs_join_two_entries_questions_in_each_language() -> None:
    held = [
        ("a", "how much is shipping?"),
        ("b", "can I pay with PayPal"),
        ("c", "满多少包邮？"),
        ("d", "支持花呗吗"),
    ]
    language_of = {
        "how much is shipping?": "en",
        "can I pay with PayPal": "en",
        "满多少包邮？": "zh",
        "支持花呗吗": "zh",
    }
    pairs = question_pairs(held, language_of)
    assert ("a", "b", "how much is shipping? can I pay with PayPal?") in pairs
    assert ("c", "d", "满多少包邮？支持花呗吗？") in pairs
    assert all(a != b for a, b, _ in pairs)
