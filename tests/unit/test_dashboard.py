"""Every metric the Grafana dashboard and the alert rules query is one kefu exports.

The PromQL of each panel, template variable and alert is parsed (promql-parser), every series
selector is mapped to its metric family (``_bucket``/``_count``/``_sum`` of a histogram,
``_total`` of a counter) and compared with the collectors that importing
``services.runtime.metrics`` registers in prometheus_client's default REGISTRY. Label matchers
and ``by (...)`` labels must exist on the metrics they apply to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import services.runtime.metrics as kefu_metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "kefu-dashboard.json"
ALERTS = REPO / "deploy" / "grafana" / "alerts.yaml"
OPERATIONS_DOC = REPO / "docs" / "operations.md"

# Grafana's built-in and this dashboard's variables, replaced by valid PromQL before parsing.
GRAFANA_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "service": ".*",
    "datasource": "prometheus",
}


@dataclass(frozen=True)
class Series:
    """A series name a kefu process exposes, with the labels it carries."""

    family: str
    kind: str
    labels: frozenset[str]


def exported_series() -> dict[str, Series]:
    """Sample names exposed for every kefu metric in the default registry."""
    labelnames = {
        metric._name: frozenset(metric._labelnames)
        for metric in vars(kefu_metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }
    series: dict[str, Series] = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("kefu_"):
            continue
        labels = labelnames.get(family.name, frozenset())
        if family.type == "counter":
            names = {f"{family.name}_total": labels}
        elif family.type == "histogram":
            names = {
                f"{family.name}_bucket": labels | {"le"},
                f"{family.name}_count": labels,
                f"{family.name}_sum": labels,
            }
        else:  # gauge, info, ...: exposed under the family name itself
            names = {family.name: labels}
        for name, names_labels in names.items():
            series[name] = Series(family.name, family.type, names_labels)
    return series


def substitute_variables(expr: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VARIABLES:
            raise AssertionError(f"unknown Grafana variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def walk(node: Any) -> Iterator[Any]:
    """Every node of a promql_parser AST, depth first."""
    yield node
    for attr in ("expr", "lhs", "rhs", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, str | int | float):
            yield from walk(child)
    for arg in getattr(node, "args", None) or ():
        yield from walk(arg)


def selectors(node: Any) -> list[Any]:
    return [n for n in walk(node) if isinstance(n, promql_parser.VectorSelector)]


def problems_in(expr: str, series: dict[str, Series]) -> list[str]:
    """What is wrong with one expression: unparsable, unknown metric, unknown label."""
    try:
        ast = promql_parser.parse(substitute_variables(expr))
    except Exception as exc:  # the parser raises its own error types
        return [f"does not parse: {exc}"]
    found: list[str] = []
    for sel in selectors(ast):
        if not sel.name:
            found.append("selector without a metric name")
            continue
        known = series.get(sel.name)
        if known is None:
            found.append(f"{sel.name} is not exported by services/runtime/metrics.py")
            continue
        for matcher in sel.matchers.matchers:
            if matcher.name not in known.labels:
                found.append(
                    f"{sel.name} has no label {matcher.name!r} (labels: {sorted(known.labels)})"
                )
    for node in walk(ast):
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            if node.modifier.type != promql_parser.AggModifierType.By:
                continue
            available: set[str] = set()
            for sel in selectors(node.expr):
                if sel.name in series:
                    available |= series[sel.name].labels
            missing = set(node.modifier.labels) - available
            if missing:
                found.append(f"by ({', '.join(sorted(missing))}): no such label in {node}")
    return found


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    queries: list[tuple[str, str]] = []
    data = dashboard()
    for panel in dashboard_panels(data["panels"]):
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r}", target["expr"]))
    for variable in data["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text.strip())
        assert match, f"variable {variable['name']}: expected label_values(metric, label)"
        selector, label = match.groups()
        # label_values(m, l) reads label l of m: check both like a `by (l)` over m.
        queries.append((f"variable ${variable['name']}", f"count by ({label}) ({selector})"))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def families_queried(exprs: list[str], series: dict[str, Series]) -> set[str]:
    families: set[str] = set()
    for expr in exprs:
        for sel in selectors(promql_parser.parse(substitute_variables(expr))):
            if sel.name in series:
                families.add(series[sel.name].family)
    return families


@pytest.fixture(scope="module")
def series() -> dict[str, Series]:
    found = exported_series()
    assert found, "importing services.runtime.metrics registered no kefu_* metrics"
    return found


def test_dashboard_queries_only_exported_metrics(series: dict[str, Series]) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 15
    failures = [f"{where}: {p}" for where, expr in queries for p in problems_in(expr, series)]
    assert not failures, "\n".join(failures)


def test_alerts_query_only_exported_metrics(series: dict[str, Series]) -> None:
    failures = [
        f"alert {rule['alert']}: {p}"
        for rule in alert_rules()
        for p in problems_in(rule["expr"], series)
    ]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("rate(kefu_no_such_metric_total[5m])", "kefu_no_such_metric_total is not exported"),
        ("kefu_end_to_end_seconds", "kefu_end_to_end_seconds is not exported"),  # no suffix
        ("rate(kefu_dlq_total{stage='x'}[5m])", "has no label 'stage'"),
        ("sum by (pod_name) (kefu_consumer_lag)", "by (pod_name)"),
        ("rate(kefu_messages_total[5m]", "does not parse"),
        ("process_cpu_seconds_total", "is not exported"),  # only kefu_* metrics count
    ],
)
def test_checker_reports_bad_queries(series: dict[str, Series], expr: str, complaint: str) -> None:
    found = problems_in(expr, series)
    assert any(complaint in p for p in found), found


def test_suffixes_map_to_their_families(series: dict[str, Series]) -> None:
    assert series["kefu_messages_total"].family == "kefu_messages"
    assert series["kefu_stage_seconds_bucket"].labels == {"service", "le"}
    assert series["kefu_stage_seconds_count"].kind == "histogram"
    assert series["kefu_consumer_lag"].kind == "gauge"
    assert "kefu_messages" not in series  # a counter is queried with its _total suffix


def test_dashboard_shows_every_required_view(series: dict[str, Series]) -> None:
    panel_exprs = [expr for where, expr in dashboard_queries() if where.startswith("panel")]
    shown = families_queried(panel_exprs, series)
    required = {
        "kefu_messages",  # throughput per stage
        "kefu_end_to_end_seconds",  # end-to-end p50/p99
        "kefu_consumer_lag",
        "kefu_dlq",
        "kefu_handoffs",
        "kefu_intents",
        "kefu_sentiment",
        "kefu_model_inference_seconds",
        "kefu_order_rpc_seconds",
    }
    assert required <= shown, f"no panel for {sorted(required - shown)}"
    e2e = [e for e in panel_exprs if "kefu_end_to_end_seconds_bucket" in e]
    assert any("histogram_quantile(0.5," in e for e in e2e)
    assert any("histogram_quantile(0.99," in e for e in e2e)


def test_dashboard_structure() -> None:
    data = dashboard()
    panels = list(dashboard_panels(data["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert data["uid"] and data["title"]
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel.get("description"), f"panel {panel['title']!r} has no description"


def test_alerts_cover_lag_dlq_latency_and_handoffs(series: dict[str, Series]) -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    by_family = {name: families_queried([rule["expr"]], series) for name, rule in rules.items()}
    assert "kefu_consumer_lag" in by_family["KefuConsumerLagGrowing"]
    assert "deriv(kefu_consumer_lag" in rules["KefuConsumerLagGrowing"]["expr"]
    assert "kefu_dlq" in by_family["KefuDLQRateHigh"]
    p99 = rules["KefuEndToEndP99OverBudget"]["expr"]
    assert "histogram_quantile(0.99" in p99 and "> 0.1" in p99  # the 100 ms budget
    assert "kefu_handoffs" in by_family["KefuHandoffSpike"]


def test_alert_rules_are_complete() -> None:
    doc = OPERATIONS_DOC.read_text(encoding="utf-8").lower()
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"Kefu[A-Za-z0-9]+", name), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/operations.md#{name.lower()}", name
        assert f"### {name.lower()}" in doc, f"docs/operations.md has no section for {name}"
