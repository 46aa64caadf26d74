"""The evaluation's table: per method and area, each metric's mean, spread and confidence interval
over cases, and whether the ordering of the methods is more than noise.

    table = summarise(rows)        # rows: one dict per method x case x area (vjx.pipeline.evaluate)
    table[0]                       # {"method": "step", "area": 0.1, "metrics": {"deletion_auc":
                                   #   {"mean": 0.21, "std": 0.05, "n": 5, "low": 0.17, "high": 0.25}, ...}}
    table_csv(table), table_markdown(table)
    order = ordering(rows)         # per scored metric and area: Krippendorff's alpha, best vs each other
    report_markdown(rows)          # the tables of all cases and of recognised ones, and the ordering

A metric's statistics use the cases where it is defined (``n`` of them); the standard deviation is
that of those values (``ddof=0``, so one case gives 0); ``low``/``high`` is the 95% percentile
bootstrap interval of the mean (:func:`vjx.metrics.bootstrap_interval`, seeded). Every numeric field
of the rows that is not one of :data:`IDENTITY` is a metric, so numbers a method adds to its rows
reach the table too. :func:`recognised` keeps the cases whose class is in the model's top 5 on the
unperturbed input: on a composite the model does not recognise, no map can find the class.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from vjx import metrics
from vjx.pipeline.files import csv_bytes
from vjx.pipeline.scores import METRICS

IDENTITY = ("method", "area", "case", "kind", "label", "target", "target_name")
STATISTICS = ("mean", "std", "n", "low", "high")
TOP = 5                            # recognised: the explained class is among the model's top TOP
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
                low, high = metrics.bootstrap_interval(values)
                stats[name] = {"mean": float(values.mean()), "std": float(values.std()), "n": int(values.size),
                               "low": low, "high": high}
        table.append({"method": method, "area": area, "metrics": stats})
    return table


def metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The metrics of the rows: the headline ones first, then the others in order of appearance."""
    found = dict.fromkeys(k for row in rows for k, v in row.items() if k not in IDENTITY and _is_number(v))
    return [n for n in HEADLINE if n in found] + [n for n in found if n not in HEADLINE]


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float, np.number)) and math.isfinite(float(value))


def table_csv(table: Sequence[dict[str, Any]]) -> bytes:
    """One CSV line per table line: method, area, then ``<metric>_mean``, ``_std``, ``_n``, ``_low``,
    ``_high`` per metric."""
    names = list(dict.fromkeys(n for line in table for n in line["metrics"]))
    columns = ["method", "area"] + [f"{n}_{s}" for n in names for s in STATISTICS]
    lines = [{"method": line["method"], "area": line["area"],
              **{f"{n}_{s}": v for n, stats in line["metrics"].items() for s, v in stats.items()}} for line in table]
    return csv_bytes(lines, columns)


def table_markdown(table: Sequence[dict[str, Any]]) -> str:
    """A Markdown table: ``mean [low, high]`` per metric (the bootstrap interval); ``n`` in the header
    when every line has the same."""
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
            cell = f"{stats['mean']:.3f} [{stats['low']:.3f}, {stats['high']:.3f}]"
            cells.append(cell if len(counts[n]) == 1 else f"{cell} (n={stats['n']})")
        lines.append("| " + " | ".join(cells).replace("*", "\\*") + " |")
    return "\n".join(lines) + "\n"


def recognised(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of cases whose explained class is among the model's top :data:`TOP` (``target_rank``)."""
    return [row for row in rows if _is_number(row.get("target_rank")) and row["target_rank"] <= TOP]


def ordering(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Is the methods' order on each scored metric and area more than noise?

    Per metric of :data:`HEADLINE` with a direction and per area: each case ranks the methods that
    have a value on it (1 = best); ``alpha`` is Krippendorff's ordinal alpha of those rankings (the
    cases as coders, the methods as units; NaN with fewer than two methods or no spread); ``best``
    is the method with the best mean, and ``versus`` its paired bootstrap difference to every other
    method over the cases both have (:func:`vjx.metrics.paired_difference`, best minus other:
    positive is better for "higher" metrics, negative for "lower"), ``runner_up`` the next best.

    Returns:
      ``[{"metric", "area", "alpha", "cases", "best", "runner_up", "versus": {method: {"mean", "low",
      "high", "flipped", "n"}}}]``, in the order of the metrics.
    """
    methods = list(dict.fromkeys(row["method"] for row in rows))
    areas = list(dict.fromkeys(row["area"] for row in rows))
    cases = list(dict.fromkeys(row["case"] for row in rows))
    order = []
    for name, better in HEADLINE.items():
        if better is None:
            continue
        for area in areas:
            grid = np.full((len(cases), len(methods)), np.nan)                          # cases x methods
            for row in rows:
                if row["area"] == area and _is_number(row.get(name)):
                    grid[cases.index(row["case"]), methods.index(row["method"])] = float(row[name])
            scored = [k for k in range(len(methods)) if not np.isnan(grid[:, k]).all()]
            if len(scored) < 2:
                continue
            sign = 1.0 if better == "higher" else -1.0
            means = {k: np.nanmean(grid[:, k]) for k in scored}
            ranked = sorted(scored, key=lambda k: -sign * means[k])
            best = ranked[0]
            versus = {}
            for k in ranked[1:]:
                both = ~np.isnan(grid[:, best]) & ~np.isnan(grid[:, k])
                if both.any():
                    versus[methods[k]] = vars(metrics.paired_difference(grid[both, best], grid[both, k]))
            ranks = metrics.case_ranks(grid[:, scored], higher_is_better=better == "higher")
            order.append({"metric": name, "area": area, "alpha": metrics.krippendorff_alpha(ranks),
                          "cases": int(((~np.isnan(grid[:, scored])).sum(1) >= 2).sum()),
                          "best": methods[best], "runner_up": methods[ranked[1]], "versus": versus})
    return order


def ordering_markdown(order: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`ordering`: best, runner-up, their paired difference and alpha."""
    lines = ["| metric | area | cases | best | runner-up | best − runner-up [95% interval] | resamples flipped | α |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in order:
        diff = entry["versus"].get(entry["runner_up"])
        gap = "–" if diff is None else f"{diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"
        flipped = "–" if diff is None else f"{diff['flipped']:.3f}"
        cells = [entry["metric"].replace("_", " "), f"{entry['area']:g}", str(entry["cases"]), entry["best"],
                 entry["runner_up"], gap, flipped, f"{entry['alpha']:.2f}"]
        lines.append("| " + " | ".join(cells).replace("*", "\\*") + " |")
    return "\n".join(lines) + "\n"


def report_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The evaluation's ``table.md``: the table of all cases, of the recognised ones, and the ordering."""
    top = recognised(rows)
    parts = ["## All cases\n\n" + table_markdown(summarise(rows)),
             f"## Cases whose class is in the model's top {TOP} ({len({r['case'] for r in top})} of "
             f"{len({r['case'] for r in rows})})\n\n" + (table_markdown(summarise(top)) if top else "none\n"),
             "## Ordering (all cases): is the best method better than the runner-up?\n\n" +
             ordering_markdown(ordering(rows)),
             f"## Ordering (cases whose class is in the top {TOP})\n\n" + (ordering_markdown(ordering(top)) if top
                                                                          else "none\n")]
    return "\n".join(parts)
