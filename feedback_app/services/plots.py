"""Small server-side SVG line charts for training curves (no JavaScript, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.html import escape

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"]


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]], *, title: str, width: int = 560, height: int = 220
) -> str:
    """An SVG chart with one polyline per series; x and y scaled to the data."""
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    pad_left, pad_right, pad_top, pad_bottom = 48, 12, 24, 28
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    plot_w, plot_h = width - pad_left - pad_right, height - pad_top - pad_bottom

    def sx(x: float) -> float:
        return pad_left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return pad_top + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" class="chart">',
        f'<text x="{pad_left}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
        f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{pad_left + plot_w}" '
        f'y2="{pad_top + plot_h}" stroke="#999"/>',
        f'<line x1="{pad_left}" y1="{pad_top}" x2="{pad_left}" y2="{pad_top + plot_h}" stroke="#999"/>',
        f'<text x="4" y="{pad_top + 10}" font-size="11">{y1:.3g}</text>',
        f'<text x="4" y="{pad_top + plot_h}" font-size="11">{y0:.3g}</text>',
        f'<text x="{pad_left}" y="{height - 8}" font-size="11">{x0:.0f}</text>',
        f'<text x="{pad_left + plot_w - 30}" y="{height - 8}" font-size="11">{x1:.0f}</text>',
    ]
    for index, (name, values) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        parts.append(  # one legend line per series, top right
            f'<text x="{width - pad_right - 4}" y="{pad_top + 12 + 13 * index}" font-size="11" '
            f'text-anchor="end" fill="{color}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def run_charts(history: list[dict[str, Any]]) -> list[str]:
    """Loss per stage, and every accuracy-like metric, from a run's progress history."""
    losses: dict[str, list[tuple[float, float]]] = {}
    accuracies: dict[str, list[tuple[float, float]]] = {}
    for point in history:
        stage, step = point.get("stage", "?"), float(point.get("step", 0))
        if "loss" in point:
            losses.setdefault(stage, []).append((step, float(point["loss"])))
        for key, value in point.items():
            if "acc" in key and isinstance(value, (int, float)):
                accuracies.setdefault(f"{stage} {key}", []).append((step, float(value)))
    charts = []
    if losses:
        charts.append(line_chart(losses, title="Training loss by stage"))
    if accuracies:
        charts.append(line_chart(accuracies, title="Accuracy"))
    return charts
