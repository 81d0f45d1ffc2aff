"""latency.png: p50 and p99 against the candidate count, one line per target and wire format (a
colour per target, a line style per format)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import product
from pathlib import Path

from research.bench.latency_passes import HEADLINE_PERCENTILES, LatencyRow

PLOT_SIZE_INCHES = (10.0, 4.0)
PLOT_DPI = 120
LINE_STYLES = ("-", "--", ":", "-.")  # per wire format, in the rows' order


def plot_latency(rows: Sequence[LatencyRow], path: Path) -> None:
    """p50 and p99 against N, one line per (target, wire format); written to a temp name, then
    renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(HEADLINE_PERCENTILES), figsize=PLOT_SIZE_INCHES, sharey=True)
    targets = list(dict.fromkeys(r.target for r in rows))
    wires = list(dict.fromkeys(r.wire for r in rows))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, percentile in zip(axes, HEADLINE_PERCENTILES, strict=True):
        for (t, target), (w, wire) in product(enumerate(targets), enumerate(wires)):
            mine = sorted(
                (r for r in rows if r.target == target and r.wire == wire),
                key=lambda r: r.candidates,
            )
            axis.plot(
                [r.candidates for r in mine],
                [getattr(r, f"p{percentile}_ms") for r in mine],
                marker="o",
                markersize=3,
                color=colours[t % len(colours)],
                linestyle=LINE_STYLES[w % len(LINE_STYLES)],
                label=f"{target} {wire}",
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("candidates per request")
        axis.set_title(f"p{percentile}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp, dpi=PLOT_DPI)
    plt.close(figure)
    os.replace(tmp, path)
