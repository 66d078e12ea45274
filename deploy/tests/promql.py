"""PromQL read with promql-parser (a port of Prometheus' own parser): the selectors of an
expression and the labels it groups by, and a check that it reads only series ctrbid
exports, with labels they have."""

from __future__ import annotations

import re

import promql_parser

# Grafana's built-in variables in a range, replaced by a duration so the expression parses.
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def grafana_to_promql(expr: str) -> str:
    """A dashboard's expression with Grafana's range variables replaced; the dashboard's
    own variables ($namespace, $variant) stand in label values, where they parse as text."""
    for var, value in GRAFANA_RANGES.items():
        expr = expr.replace(var, value)
    return expr


def argo_to_promql(query: str, args: dict[str, str]) -> str:
    """An AnalysisTemplate query with its `{{args.NAME}}` replaced."""

    def arg(m: re.Match) -> str:
        name = m.group(1)
        if name not in args:
            raise KeyError(f"{{{{args.{name}}}}} has no value")
        return args[name]

    return re.sub(r"\{\{\s*args\.([a-z0-9-]+)\s*\}\}", arg, query)


def _walk(expr, visit) -> None:
    promql_parser.walk(expr, lambda node: visit(node) or True)


def selectors(expr) -> list[tuple[str | None, list[tuple[str, str, str]]]]:
    """(metric name, [(label, op, value)]) of every vector selector, also those inside
    range selectors and subqueries."""
    out = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = [(m.name, str(m.op), m.value) for m in node.matchers.matchers]
            name = node.name or next((v for (l, _, v) in matchers if l == "__name__"), None)
            out.append((name, [m for m in matchers if m[0] != "__name__"]))

    _walk(expr, visit)
    return out


def problems(text: str, known: dict[str, set[str] | None], extra_labels: set[str]) -> list[str]:
    """What is wrong with the PromQL `text`: it does not parse; it reads a metric that is
    not in `known`, or none by name; it matches or groups by a label that none of the
    metrics it reads has (where `known` has their labels), `extra_labels` (the scrape's
    target labels) aside."""
    try:
        expr = promql_parser.parse(text)
    except Exception as e:  # the parser raises ValueError with the position
        return [f"does not parse: {e}"]
    out = []
    for name, matchers in selectors(expr):
        if name is None:
            out.append("a selector without a metric name")
            continue
        if name not in known:
            out.append(f"unknown metric {name}")
            continue
        labels = known[name]
        if labels is None:
            continue
        for label, _, _ in matchers:
            if label not in labels | extra_labels:
                out.append(f"{name} has no label {label!r} (it has {sorted(labels)})")

    def visit(node):
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            if str(node.modifier.type).endswith("Without"):
                return
            below = [known.get(n) for n, _ in selectors(node.expr) if n in known]
            if not below or any(b is None for b in below):
                return
            have = set().union(*below) | extra_labels
            for label in node.modifier.labels:
                if label not in have:
                    out.append(f"groups by {label!r}, which none of {sorted({n for n, _ in selectors(node.expr)})} has")

    _walk(expr, visit)
    return out
