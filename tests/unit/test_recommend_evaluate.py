"""Offline evaluation: reading files, the leave-last-out split, the metrics, tuning, the CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from kefu.commands.recommend import eval_recommend_cmd, train_recommend_cmd
from services.models import registry
from services.recommend.evaluate import (
    DataError,
    Scores,
    default_grid,
    leave_last_out,
    ndcg_at,
    popularity_rankings,
    read_jsonl,
    run_evaluation,
    score_rankings,
    select_best,
    write_jsonl,
)
from services.recommend.model import Interaction, TrainConfig
from services.recommend.store import load_model

T0 = 1_700_000_000.0
DAY = 86_400.0


def clustered(seed: int = 0) -> list[Interaction]:
    """Two tastes; the larger crowd's products dominate popularity, the smaller crowd's do not.

    Each customer's products follow a fixed order within their cluster (like a series), so the
    newest product is predictable from the others, but not from popularity.
    """
    rng = random.Random(seed)
    rows = []
    for cluster, n_users, first in (("a", 40, 0), ("b", 80, 50)):
        items = [f"P{10000 + first + i:05d}" for i in range(20)]
        for u in range(n_users):
            picked = sorted(rng.sample(range(20), 6))
            for j, i in enumerate(picked):
                rows.append(Interaction(f"{cluster}{u}", items[i], "purchase", T0 + j * DAY))
    return rows


def test_leave_last_out_holds_out_the_newest_product() -> None:
    rows = [
        Interaction("u1", "A", "view", T0 + 1),
        Interaction("u1", "B", "view", T0 + 3),
        Interaction("u1", "A", "purchase", T0 + 2),  # repeats of other products stay
        Interaction("u1", "C", "view", T0 + 3),  # tie on time with B: the later line wins
        Interaction("u1", "C", "view", T0),  # an earlier look at the held-out product: removed
        Interaction("u2", "A", "view", T0),  # one product only: training data, not evaluated
        Interaction("u2", "A", "cart", T0 + 1),
    ]
    split = leave_last_out(rows)
    assert split.test == {"u1": rows[3]}
    assert split.train == [rows[0], rows[1], rows[2], rows[5], rows[6]]
    assert split.held_out_repeats == 1


def test_metrics_by_hand() -> None:
    assert ndcg_at(0, 10) == 1.0
    assert ndcg_at(2, 10) == pytest.approx(0.5)
    assert ndcg_at(10, 10) == 0.0 and ndcg_at(None, 10) == 0.0
    test = {u: Interaction(u, pid, "view", T0) for u, pid in (("a", "X"), ("b", "Y"), ("c", "Z"))}
    ranked = {"a": ["X", "Q"], "b": ["Q", "R", "S", "Y"], "c": ["Q"]}
    scores = score_rankings(ranked, test, k=3)
    assert scores.hr == pytest.approx(1 / 3)
    assert scores.ndcg == pytest.approx(1 / 3)
    scores = score_rankings(ranked, test, k=4)
    assert scores.hr == pytest.approx(2 / 3)
    assert scores.ndcg == pytest.approx((1 + 1 / math.log2(5)) / 3)


def test_popularity_baseline_counts_customers_and_skips_what_they_have() -> None:
    rows = [
        Interaction("a", "X", "view", T0),
        Interaction("a", "X", "view", T0 + 1),  # the same customer twice counts once
        Interaction("b", "Y", "view", T0),
        Interaction("c", "Y", "view", T0),
        Interaction("c", "Z", "view", T0),
    ]
    ranked = popularity_rankings(rows, ["a", "c", "new"], k=2)
    assert ranked == {"a": ["Y", "Z"], "c": ["X"], "new": ["Y", "X"]}


def test_selection_treats_hr_within_one_standard_error_as_a_tie() -> None:
    a, b, c = TrainConfig("item_cosine"), TrainConfig("item_bm25"), TrainConfig("als")
    # SE at hr=0.9, n=100 is 0.03: b is within it and ranks better; c is clearly worse on HR.
    tried = [
        (a, Scores(0.90, 0.40, 100)),
        (b, Scores(0.88, 0.80, 100)),
        (c, Scores(0.80, 0.95, 100)),
    ]
    assert select_best(tried)[0] is b
    tried = [(a, Scores(0.90, 0.40, 10_000)), (b, Scores(0.88, 0.80, 10_000))]
    assert select_best(tried)[0] is a
    tried = [(a, Scores(0.5, 0.3, 50)), (b, Scores(0.5, 0.3, 50))]
    assert select_best(tried)[0] is a  # equal: the simpler, earlier one


def test_model_beats_popularity_where_popularity_is_misleading() -> None:
    grid = [TrainConfig("item_cosine", half_life_days=0), TrainConfig("item_bm25")]
    result = run_evaluation(clustered(), k=10, grid=grid)
    model, pop = result["model"], result["popularity"]
    assert result["n_test_users"] == 120
    # The small crowd's newest products are never among the big crowd's best sellers.
    assert model["hr@10"] >= 1.2 * pop["hr@10"]
    assert model["ndcg@10"] > pop["ndcg@10"]
    assert result["hr_lift_vs_popularity"] == pytest.approx(model["hr@10"] / pop["hr@10"], 1e-3)
    assert result["validation"]["configs_tried"] == 2
    assert result["long_tail"]["model"]["hr@10"] > result["long_tail"]["popularity"]["hr@10"]


def test_default_grid_covers_every_algorithm_and_decay() -> None:
    grid = default_grid()
    assert {c.algorithm for c in grid} == {"item_cosine", "item_bm25", "als"}
    assert {c.half_life_days for c in grid} >= {0.0, 30.0}
    for config in grid:
        config.validate()


def test_reads_rating_exports_and_our_collection(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"user_id": "A1", "item_id": "B000K2PJ4K", "rating": 5.0, "ts": 1441324800}\n'
        "\n"
        '{"user_id": "u1", "product_id": "P10001", "kind": "cart", "quantity": 2,'
        ' "at": "2025-11-20T10:00:00Z"}\n'
        '{"user_id": "u1", "product_id": "P10002", "kind": "view", "at": {"$date": '
        '{"$numberLong": "1763632800000"}}}\n'
        '{"user_id": "u2", "product_id": "P10002", "kind": "view", "at": 1763632800000}\n',
        encoding="utf-8",
    )
    rows = read_jsonl(path)
    assert rows[0] == Interaction("A1", "B000K2PJ4K", "purchase", 1441324800.0)
    assert rows[1] == Interaction("u1", "P10001", "cart", 1763632800.0, 2)
    assert rows[2].at == rows[3].at == 1763632800.0
    out = tmp_path / "round.jsonl"
    assert write_jsonl(rows, out) == 4
    assert read_jsonl(out) == [
        Interaction(r.user_id, r.product_id, r.kind, r.at, r.quantity) for r in rows
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "malformed JSON"),
        ('["a"]', "one JSON object per line"),
        ('{"item_id": "X", "ts": 1}', "user_id"),
        ('{"user_id": "u", "item_id": "X Y", "ts": 1}', "product_id/item_id"),
        ('{"user_id": "u", "item_id": "X"}', "no time field"),
        ('{"user_id": "u", "item_id": "X", "ts": "soon"}', "not ISO 8601"),
        ('{"user_id": "u", "item_id": "X", "ts": -5}', "not a valid epoch"),
        ('{"user_id": "u", "item_id": "X", "ts": 1, "kind": "like"}', "kind"),
        ('{"user_id": "u", "item_id": "X", "ts": 1, "quantity": 0}', "quantity"),
    ],
)
def test_bad_lines_are_reported_with_their_number(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"user_id": "u", "item_id": "X", "ts": 1}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"bad.jsonl:2: .*{message}"):
        read_jsonl(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no interactions"):
        read_jsonl(tmp_path / "empty.jsonl")
    single = [Interaction("u", "X", "view", T0)]
    with pytest.raises(DataError, match="nothing to hold out"):
        run_evaluation(single)


def test_eval_command_prints_json_last(tmp_path: Path) -> None:
    data = tmp_path / "interactions.jsonl"
    write_jsonl(clustered(), data)
    result = CliRunner().invoke(
        eval_recommend_cmd, ["--data", str(data), "--algorithm", "item_cosine"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["k"] == 10 and summary["algorithm"] == "item_cosine"
    assert summary["model"]["hr@10"] >= 1.2 * summary["popularity"]["hr@10"]
    assert any(line.startswith("popularity") for line in lines[:-1])


def test_eval_command_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(eval_recommend_cmd, []).exit_code == 2
    both = runner.invoke(eval_recommend_cmd, ["--data", "x.jsonl", "--from-mongo"])
    assert both.exit_code == 2 and "exactly one" in both.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    result = runner.invoke(eval_recommend_cmd, ["--data", str(bad)])
    assert result.exit_code == 2 and "bad.jsonl:1" in result.output


def test_train_command_publishes_a_loadable_version(tmp_path: Path) -> None:
    data = tmp_path / "interactions.jsonl"
    write_jsonl(clustered(), data)
    root = tmp_path / "models"
    result = CliRunner().invoke(
        train_recommend_cmd,
        ["--data", str(data), "--out", str(root), "--algorithm", "item_bm25", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["published"] is True and summary["algorithm"] == "item_bm25"
    assert registry.current_version(root, "recommend") == summary["version"]
    manifest = registry.read_manifest(root / "recommend" / summary["version"])
    assert manifest["kind"] == "recommend"
    assert manifest["metrics"]["validation_hr@10"] == summary["validation_hr@10"] > 0
    model, version = load_model(root)
    assert version == summary["version"] and model.config.algorithm == "item_bm25"
    assert model.n_items == 40

    # --no-publish writes a version without making it current.
    again = CliRunner().invoke(
        train_recommend_cmd,
        [
            "--data",
            str(data),
            "--out",
            str(root),
            "--algorithm",
            "item_cosine",
            "--quiet",
            "--no-publish",
        ],
    )
    assert again.exit_code == 0, again.output
    assert len(registry.list_versions(root, "recommend")) == 2
    assert registry.current_version(root, "recommend") == summary["version"]

    # --if-missing: a published version exists, so nothing is trained (setup scripts rerun).
    skip = CliRunner().invoke(
        train_recommend_cmd, ["--data", str(data), "--out", str(root), "--if-missing", "--quiet"]
    )
    assert skip.exit_code == 0, skip.output
    assert json.loads(skip.output.strip().splitlines()[-1]) == {
        "kind": "recommend",
        "skipped": True,
        "version": summary["version"],
    }
    assert len(registry.list_versions(root, "recommend")) == 2
