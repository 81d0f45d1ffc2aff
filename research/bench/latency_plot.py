"""latency.png: p50 and p99 against the candidate count, one line per target."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from research.bench.latency_passes import HEADLINE_PERCENTILES, LatencyRow

PLOT_SIZE_INCHES = (10.0, 4.0)
PLOT_DPI = 120


def plot_latency(rows: Sequence[LatencyRow], path: Path) -> None:
    """p50 and p99 against N, one line per target; written to a temp name, then renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(HEADLINE_PERCENTILES), figsize=PLOT_SIZE_INCHES, sharey=True)
    targets = list(dict.fromkeys(r.target for r in rows))
    for axis, percentile in zip(axes, HEADLINE_PERCENTILES, strict=True):
        for target in targets:
            mine = sorted((r for r in rows if r.target == target), key=lambda r: r.candidates)
            axis.plot(
                [r.candidates for r in mine],
                [getattr(r, f"p{percentile}_ms") for r in mine],
                marker="o",
                label=target,
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("candidates per request")
        axis.set_title(f"p{percentile}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp, dpi=PLOT_DPI)
    plt.close(figure)
    os.replace(tmp, path)
