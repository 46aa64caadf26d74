"""The evaluation's table: per method and area, each metric's mean and standard deviation over cases.

    table = summarise(rows)        # rows: one dict per method x case x area (vjx.pipeline.evaluate)
    table[0]                       # {"method": "step", "area": 0.1, "metrics": {"deletion_auc":
                                   #   {"mean": 0.21, "std": 0.05, "n": 5}, ...}}
    table_csv(table), table_markdown(table)

A metric's statistics use the cases where it is defined (``n`` of them); the standard deviation is
that of those values (``ddof=0``, so one case gives 0). Every numeric field of the rows that is not
one of :data:`IDENTITY` is a metric, so numbers a method adds to its rows reach the table too.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from vjx.pipeline.files import csv_bytes
from vjx.pipeline.scores import METRICS

IDENTITY = ("method", "area", "case", "kind", "label", "target", "target_name")
# The comparison's metrics first, in the order of the table of metrics; whether higher or lower is better.
HEADLINE = {metric.name: metric.better for metric in METRICS}


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per ``(method, area)`` in the rows' order: ``{"method", "area", "metrics": {name: stats}}``."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["area"]), []).append(row)
    names = metric_names(rows)
    table = []
    for (method, area), members in groups.items():
        stats = {}
        for name in names:
            values = np.array([float(r[name]) for r in members if _is_number(r.get(name))], np.float64)
            if values.size:
                stats[name] = {"mean": float(values.mean()), "std": float(values.std()), "n": int(values.size)}
        table.append({"method": method, "area": area, "metrics": stats})
    return table


def metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The metrics of the rows: the headline ones first, then the others in order of appearance."""
    found = dict.fromkeys(k for row in rows for k, v in row.items() if k not in IDENTITY and _is_number(v))
    return [n for n in HEADLINE if n in found] + [n for n in found if n not in HEADLINE]


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float, np.number)) and math.isfinite(float(value))


def table_csv(table: Sequence[dict[str, Any]]) -> bytes:
    """One CSV line per table line: method, area, then ``<metric>_mean``, ``_std``, ``_n`` per metric."""
    names = list(dict.fromkeys(n for line in table for n in line["metrics"]))
    columns = ["method", "area"] + [f"{n}_{s}" for n in names for s in ("mean", "std", "n")]
    lines = [{"method": line["method"], "area": line["area"],
              **{f"{n}_{s}": v for n, stats in line["metrics"].items() for s, v in stats.items()}} for line in table]
    return csv_bytes(lines, columns)


def table_markdown(table: Sequence[dict[str, Any]]) -> str:
    """A Markdown table: ``mean ± std`` per metric; ``n`` in the header when every line has the same."""
    names = list(dict.fromkeys(n for line in table for n in line["metrics"]))
    counts = {n: {line["metrics"][n]["n"] for line in table if n in line["metrics"]} for n in names}
    headers = ["method", "area"]
    for n in names:
        arrow = {"higher": " ↑", "lower": " ↓"}.get(HEADLINE.get(n, ""), "")
        same = f" (n={next(iter(counts[n]))})" if len(counts[n]) == 1 else ""
        headers.append(f"{n.replace('_', ' ')}{arrow}{same}")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for line in table:
        cells = [str(line["method"]), f"{line['area']:g}"]
        for n in names:
            stats = line["metrics"].get(n)
            if stats is None:
                cells.append("–")
                continue
            cell = f"{stats['mean']:.3f} ± {stats['std']:.3f}"
            cells.append(cell if len(counts[n]) == 1 else f"{cell} (n={stats['n']})")
        lines.append("| " + " | ".join(cells).replace("*", "\\*") + " |")
    return "\n".join(lines) + "\n"
