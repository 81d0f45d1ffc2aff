"""The comparison's report: docs/results/compare-<name>.md (text from templates/), a JSON of
every figure and the Pareto plot, all drawn from the figures `summary.compare_figures` computes."""

from __future__ import annotations

from pathlib import Path

from prerank_model.config import ModelConfig
from research.compare.plots import draw_plots
from research.compare.summary import CompareFigures
from research.compare.text import render
from research.markdown import write_markdown_report


def render_markdown(
    figures: CompareFigures, *, notes: str | None, generated_on: str, commit: str
) -> str:
    """docs/results/compare-<name>.md's text; `notes`: the hand-written notes, appended."""
    return render(
        "compare.md.j2",
        **figures,
        model_json=ModelConfig.model_validate(figures["model"]).model_dump_json(),
        notes=notes,
        generated_on=generated_on,
        commit=commit,
    )


def write_compare_report(figures: CompareFigures, out: Path) -> Path:
    """Write <out>/compare-<name>.md, .json and -pareto.png; return the markdown's path."""
    return write_markdown_report(figures, out, figures["report"], render_markdown, draw_plots)
