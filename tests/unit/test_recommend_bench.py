"""`bench/recommend.py` runs end to end on a tiny shop and prints its figures as JSON last."""

from __future__ import annotations

import json

from click.testing import CliRunner

from bench.recommend import bench_recommend_cmd, synthetic_shop


def test_synthetic_shop_has_the_promised_shape() -> None:
    shop = synthetic_shop(n_products=40, n_users=30, n_categories=4, seed=1)
    assert len(shop.catalog) == 40
    assert len(shop.histories) == 30
    assert all(5 <= len(h) <= 60 for h in shop.histories.values())
    assert sum(len(h) for h in shop.histories.values()) == len(shop.interactions)
    assert {it.kind for it in shop.interactions} == {"view", "cart", "purchase"}
    assert any(p.stock == 0 for p in shop.catalog.products())


def test_bench_prints_json_last() -> None:
    result = CliRunner().invoke(
        bench_recommend_cmd,
        [
            "--products",
            "60",
            "--users",
            "80",
            "--requests",
            "30",
            "--algorithm",
            "item_cosine",
            "--algorithm",
            "als",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["bench"] == "recommend" and summary["requests"] == 30
    assert set(summary["results"]) == {"item_cosine", "als"}
    for figures in summary["results"].values():
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert 0 < figures["cpu_p50_ms"] <= figures["cpu_p99_ms"]
    assert summary["within_budget"] == (summary["worst_p99_ms"] <= summary["budget_p99_ms"])
