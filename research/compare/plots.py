"""The comparison's PNG: test AUC against cost (`/prerank` p50, or training time when the
service was not timed), the Pareto front drawn through the models no other beats on both, the
recommended model ringed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from research.compare.summary import TRAINING_COST, CompareFigures, cost
from research.reproduce.paper import display_name
from research.reproduce.plots import save_png

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

COST_LABELS = {
    "p50_ms": "/prerank p50 (ms) at {candidates} candidates",
    TRAINING_COST: "training seconds per epoch",
}
FRONT_COLOUR, OTHER_COLOUR, CHOSEN_COLOUR = "#c44e52", "#4c72b0", "#2ca02c"


def plot_pareto(path: Path, figures: CompareFigures) -> None:
    """Each model at (cost, mean test AUC ± std over seeds), the front joined, the choice ringed."""
    rows, key = figures["rows"], figures["cost_key"]
    figure, axis = plt.subplots(figsize=(8, 5))
    for row in rows:
        x = cost(row, key)
        colour = FRONT_COLOUR if row["pareto"] else OTHER_COLOUR
        axis.errorbar(
            x, row["test_auc"], yerr=row["test_auc_std"], fmt="o", color=colour, capsize=3
        )
        axis.annotate(
            display_name(row["name"]),
            (x, row["test_auc"]),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: cost(r, key))
    axis.plot(
        [cost(r, key) for r in front],
        [r["test_auc"] for r in front],
        "--",
        color=FRONT_COLOUR,
        label="Pareto front",
    )
    chosen = figures["recommendation"]
    if chosen is not None:
        row = next(r for r in rows if r["name"] == chosen["model"])
        axis.scatter(
            [cost(row, key)],
            [row["test_auc"]],
            s=300,
            facecolors="none",
            edgecolors=CHOSEN_COLOUR,
            linewidths=2,
            label=f"recommended: {display_name(chosen['model'])}",
        )
    axis.set_xlabel(COST_LABELS[key].format(candidates=figures["latency_candidates"]))
    axis.set_ylabel("test AUC (mean ± std over seeds)")
    axis.set_title(f"Accuracy against cost, {figures['dataset']['key']}")
    axis.legend(loc="lower right")
    save_png(path, figure)


def draw_plots(figures: CompareFigures, out: Path) -> None:
    plot_pareto(out / figures["figures"]["pareto"], figures)
