"""The report's PNG plots, drawn from its figures: AUC per model, efficiency, sensitivity to K
and the learned meta matrix."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from research.reproduce.paper import PAPER, display_name
from research.reproduce.summary import ReportFigures

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def save_png(path: Path, figure: Any) -> None:
    """`figure` at `path` (temp + rename), then closed."""
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(figure)
    os.replace(tmp, path)


def plot_auc(
    path: Path, main: dict[str, dict[str, float]], models: Sequence[str], title: str
) -> None:
    """Our test AUC per model (mean ± std over seeds) with the paper's as a black mark."""
    shown = [m for m in models if m in main]
    figure, axis = plt.subplots(figsize=(9, 4))
    x = np.arange(len(shown))
    axis.bar(
        x,
        [main[m]["test_auc"] for m in shown],
        yerr=[main[m]["test_auc_std"] for m in shown],
        capsize=4,
        color=["#c44e52" if m == "fit" else "#4c72b0" for m in shown],
        label="ours (mean ± std over seeds)",
    )
    paper = [(i, float(PAPER[m]["auc"])) for i, m in enumerate(shown) if m in PAPER]
    if paper:
        axis.scatter(
            [i for i, _ in paper],
            [v for _, v in paper],
            marker="_",
            s=400,
            color="black",
            label="paper",
        )
    axis.set_xticks(x, [display_name(m) for m in shown], rotation=30, ha="right")
    values = [main[m]["test_auc"] for m in shown] + [v for _, v in paper]
    axis.set_ylim(min(values) - 0.02, max(values) + 0.01)
    axis.set_ylabel("test AUC")
    axis.set_title(title)
    axis.legend(loc="lower right")
    save_png(path, figure)


def plot_efficiency(
    path: Path,
    main: dict[str, dict[str, float]],
    latency: Sequence[dict[str, Any]],
    models: Sequence[str],
    title: str,
) -> None:
    """Training seconds per epoch, bytes stored per item and, when measured, /prerank p50."""
    shown = [m for m in models if m in main]
    panels = 3 if latency else 2
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    names = [display_name(m) for m in shown]
    axes[0].bar(names, [main[m]["seconds_per_epoch"] for m in shown], color="#4c72b0")
    axes[0].set_ylabel("training seconds per epoch")
    axes[1].bar(names, [main[m]["bytes_per_item"] for m in shown], color="#55a868")
    axes[1].set_ylabel("bytes stored per item")
    if latency:
        counts = sorted({row["candidates"] for row in latency})
        width = 0.8 / len(counts)
        for offset, count in enumerate(counts):
            by_model = {r["model"]: r["p50_ms"] for r in latency if r["candidates"] == count}
            axes[2].bar(
                np.arange(len(shown)) + offset * width,
                [by_model.get(m, np.nan) for m in shown],
                width,
                label=f"{count} candidates",
            )
        axes[2].set_xticks(np.arange(len(shown)) + width * (len(counts) - 1) / 2, names)
        axes[2].set_ylabel("/prerank p50 (ms)")
        axes[2].legend()
    for axis in axes:
        axis.tick_params(axis="x", rotation=45)
    figure.suptitle(title)
    save_png(path, figure)


def plot_k(path: Path, k_rows: Sequence[dict[str, Any]], title: str) -> None:
    """FIT's test AUC against K, on a log2 axis."""
    figure, axis = plt.subplots(figsize=(6, 4))
    ks = [row["k"] for row in k_rows]
    axis.errorbar(
        ks,
        [row["test_auc"] for row in k_rows],
        yerr=[row["test_auc_std"] for row in k_rows],
        marker="o",
        capsize=3,
    )
    axis.set_xscale("log", base=2)
    axis.set_xticks(ks, [str(k) for k in ks])
    axis.set_xlabel("K (meta vectors)")
    axis.set_ylabel("FIT test AUC")
    axis.set_title(title)
    save_png(path, figure)


def plot_meta_matrix(path: Path, meta: dict[str, Any], title: str) -> None:
    """The item keys coloured by their meta index, and the meta vectors (X), in 2-D."""
    items = np.array(meta["items"])
    vectors = np.array(meta["meta_vectors"])
    index = np.array(meta["meta_index"])
    figure, axis = plt.subplots(figsize=(7, 6))
    axis.scatter(items[:, 0], items[:, 1], c=index, cmap="tab20", s=6, alpha=0.7)
    used = np.unique(index)
    axis.scatter(
        vectors[:, 0],
        vectors[:, 1],
        c=np.arange(len(vectors)),
        cmap="tab20",
        marker="X",
        s=120,
        edgecolors="black",
        linewidths=0.8,
    )
    variance = meta["explained_variance"]
    axis.set_xlabel(f"PC1 of the item keys ({variance[0]:.0%})")
    axis.set_ylabel(f"PC2 ({variance[1]:.0%})")
    axis.set_title(f"{title}\n{len(used)} of {len(vectors)} meta vectors used (X = meta vector)")
    save_png(path, figure)


def draw_plots(figures: ReportFigures, out: Path) -> None:
    """Every plot the figures allow, under `out` with the names of `figures["figures"]`."""
    label, files = figures["dataset"]["label"], figures["figures"]
    main = figures["summary"]
    models = [m for m in figures["config"]["models"] if m in main]
    plot_auc(out / files["auc"], main, models, f"Test AUC, {label}")
    plot_efficiency(
        out / files["efficiency"], main, figures["latency"], models, f"Efficiency, {label}"
    )
    if figures["k_sensitivity"]:
        plot_k(out / files["k"], figures["k_sensitivity"], f"FIT's sensitivity to K, {label}")
    if figures["meta_matrix"] is not None:
        plot_meta_matrix(
            out / files["meta_matrix"], figures["meta_matrix"], f"FIT's meta matrix, {label}"
        )
