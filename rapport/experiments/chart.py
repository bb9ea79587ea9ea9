"""A PNG chart of an experiment's results: each metric's relative lift per variant with its interval.

Drawn with matplotlib's Agg canvas on a private ``Figure`` (no display, no pyplot global state), so it is
safe in a server thread.
"""

from __future__ import annotations

import io
import math

from rapport.experiments.results import ExperimentResults

COLORS = {"better": "#1a7f37", "worse": "#cf222e", "inconclusive": "#57606a"}


def png(results: ExperimentResults) -> bytes:
    """The chart as PNG bytes: one row per (metric, variant), the lift as a dot, its interval as a bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows: list[tuple[str, float, float, float, str]] = []
    for metric in results.metrics:
        for c in metric.comparisons:
            label = f"{metric.metric.name} ({metric.role})\n{c.variant} vs {results.experiment.control}"
            t = c.test
            values = (t.lift, t.lift_ci_low, t.lift_ci_high)
            if all(math.isfinite(v) for v in values):
                rows.append((label, t.lift * 100, t.lift_ci_low * 100, t.lift_ci_high * 100, c.outcome))
            else:
                rows.append((label + " (not enough data)", 0.0, 0.0, 0.0, "inconclusive"))
    height = max(2.4, 0.75 * len(rows) + 1.4)
    figure = Figure(figsize=(8, height), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    for index, (_, lift, low, high, outcome) in enumerate(rows):
        color = COLORS[outcome]
        ax.plot([low, high], [index, index], color=color, linewidth=3, solid_capstyle="butt")
        ax.plot([lift], [index], "o", color=color, markersize=7)
    ax.axvline(0.0, color="#8c959f", linewidth=1, linestyle="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[0] for r in rows], fontsize=8)
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel(f"relative lift, % ({round((1 - results.experiment.alpha) * 100)}% interval)")
    title = f"Experiment {results.experiment.name}"
    if not results.trustworthy:
        title += " (sample ratio mismatch: not trustworthy)"
    ax.set_title(title, fontsize=10, color="#cf222e" if not results.trustworthy else "black")
    if not rows:
        ax.text(0.5, 0.5, "no comparisons yet", transform=ax.transAxes, ha="center", va="center")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
