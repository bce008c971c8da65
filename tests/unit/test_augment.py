"""Typo variants for intent training: look like slips, keep labels, reproducible, none for Chinese."""

from __future__ import annotations

import random

from services.models.augment import typo_variant, typo_variants

TEXTS = [
    "I want to cancel my order please",
    "Where is my package?",
    "refund status",
    "我要退款",
    "ok",
    "change the delivery address of order 7730192846",
]
LABELS = [
    "cancel_order",
    "track_order",
    "track_refund",
    "get_refund",
    "other",
    "change_shipping_address",
]


def test_variants_are_small_slips_of_long_latin_words() -> None:
    rng = random.Random(3)
    for _ in range(200):
        variant = typo_variant("I want to cancel my order please", rng)
        assert variant is not None and variant != "I want to cancel my order please"
        original = ["i", "want", "to", "cancel", "my", "order", "please"]
        changed = [(a, b) for a, b in zip(original, variant.lower().split(), strict=True) if a != b]
        assert 1 <= len(changed) <= 2
        for before, after in changed:
            assert len(before) >= 4 and abs(len(before) - len(after)) <= 1
            assert after[0] == before[0] and after[-1] == before[-1]  # first/last letters kept


def test_no_variant_without_a_word_to_slip() -> None:
    rng = random.Random(0)
    assert typo_variant("我要退款", rng) is None
    assert typo_variant("ok 👍", rng) is None
    assert typo_variant("", rng) is None


def test_variants_keep_labels_never_repeat_and_are_reproducible() -> None:
    texts, labels = typo_variants(TEXTS, LABELS, copies=2, seed=7)
    again = typo_variants(TEXTS, LABELS, copies=2, seed=7)
    assert (texts, labels) == again
    assert len(set(texts)) == len(texts) and not set(texts) & set(TEXTS)
    by_source = dict(zip(TEXTS, LABELS, strict=True))
    assert "get_refund" not in labels and "other" not in labels  # nothing to slip in those
    assert set(labels) <= set(by_source.values())
    assert 4 <= len(texts) <= 8
    assert any("7730192846" in t for t in texts)  # order numbers are not touched
    assert typo_variants(TEXTS, LABELS, copies=0) == ([], [])
