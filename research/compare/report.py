"""The comparison's report: docs/results/compare-<name>.md (text from templates/), a JSON of
every figure and the Pareto plot, all drawn from the figures `summary.compare_figures` computes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from offline_jobs.bundling.fingerprint import git_commit
from prerank_contract.bundle import write_text_atomically
from prerank_model.config import ModelConfig
from research.compare.plots import draw_plots
from research.compare.summary import CompareFigures
from research.compare.text import render
from research.reproduce.report import read_notes


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
    report = figures["report"]
    out.mkdir(parents=True, exist_ok=True)
    draw_plots(figures, out)
    markdown = out / f"{report}.md"
    text = render_markdown(
        figures,
        notes=read_notes(out, report),
        generated_on=f"{datetime.now(UTC):%Y-%m-%d}",
        commit=git_commit() or "unknown",
    )
    write_text_atomically(markdown, text)
    write_text_atomically(out / f"{report}.json", json.dumps(figures, indent=1, default=str))
    return markdown
