"""The reproduction's report: docs/results/<dataset>.md beside the paper's table (text from
templates/report.md.j2), a JSON of every figure, and PNG plots, all drawn from the figures
`summary.report_figures` computes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prerank_model.config import ModelConfig
from research.markdown import write_markdown_report
from research.reproduce.paper import BASELINE, PAPER, PAPER_TRAIN_RATIO, rela_impr
from research.reproduce.plots import draw_plots
from research.reproduce.summary import ReportFigures
from research.reproduce.text import render

Summary = dict[str, dict[str, float]]


def accuracy_rows(main: Summary, models: Sequence[str]) -> list[dict[str, Any]]:
    """The paper's table, its figures beside ours, RelaImpr over each side's Two-Tower."""
    base = main.get(BASELINE, {}).get("test_auc")
    paper_base = float(PAPER[BASELINE]["auc"])
    return [
        {
            "name": name,
            "paper": PAPER[name],
            "paper_impr": rela_impr(float(PAPER[name]["auc"]), paper_base),
            "ours": main[name],
            "impr": rela_impr(main[name]["test_auc"], base) if base else None,
            "gap": main[name]["test_auc"] - float(PAPER[name]["auc"]),
        }
        for name in models
        if name in PAPER
    ]


def ablation_rows(main: Summary, models: Sequence[str]) -> list[dict[str, Any]]:
    """FIT's variants (no paper figures), each with its AUC's difference to full FIT."""
    fit = main["fit"]["test_auc"] if "fit" in main else math.nan
    return [
        {"name": name, "ours": main[name], "delta": main[name]["test_auc"] - fit}
        for name in models
        if name not in PAPER
    ]


def leaky_rows(leaky: Summary, models: Sequence[str]) -> list[dict[str, Any]] | None:
    """The runs with the leaky mean-rating features; None when there were none."""
    if not leaky:
        return None
    base = leaky.get(BASELINE, {}).get("test_auc")
    return [
        {
            "name": name,
            "paper_auc": PAPER.get(name, {}).get("auc", "-"),
            "ours": leaky[name],
            "impr": rela_impr(leaky[name]["test_auc"], base) if base else None,
        }
        for name in models
        if name in leaky
    ]


def efficiency_rows(
    main: Summary, latency: Sequence[dict[str, Any]], counts: Sequence[int], models: Sequence[str]
) -> list[dict[str, Any]]:
    """Per model: training time (and its ratio to Two-Tower's, ours and the paper's), the
    latency row at each candidate count (None where not measured), bytes per item."""
    by_model_and_count = {(r["model"], r["candidates"]): r for r in latency}
    base_epoch = main.get(BASELINE, {}).get("seconds_per_epoch") or math.nan
    paper_base_train = float(PAPER[BASELINE]["train_s"])
    rows = []
    for name in models:
        paper = PAPER.get(name)
        rows.append(
            {
                "name": name,
                "ours": main[name],
                "over_baseline": main[name]["seconds_per_epoch"] / base_epoch,
                "paper": paper,
                "paper_over_baseline": float(paper["train_s"]) / paper_base_train
                if paper
                else None,
                "latency": [by_model_and_count.get((name, count)) for count in counts],
            }
        )
    return rows


def markdown_context(figures: ReportFigures) -> dict[str, Any]:
    """What templates/report.md.j2 lays out: the figures, grouped into its tables."""
    config, main = figures["config"], figures["summary"]
    models = [m for m in config["models"] if m in main]
    counts = sorted({row["candidates"] for row in figures["latency"]})
    asked = max(config["latency_candidates"])
    ratio = figures["fit_over_two_tower_train_time"]
    meta = figures["meta_matrix"]
    return {
        "dataset": figures["dataset"],
        # from the MovieLens loader's recorded settings, which the protocol paragraph describes
        "max_history": figures["dataset"]["details"]["config"]["max_history"],
        "config": config,
        "train": figures["train"],
        "model_json": ModelConfig.model_validate(figures["model"]).model_dump_json(),
        "accuracy": accuracy_rows(main, models),
        "ablations": ablation_rows(main, models),
        "ordering": figures["ordering"],
        "leaky": leaky_rows(figures["leaky_summary"], models),
        "counts": counts,
        "efficiency": efficiency_rows(main, figures["latency"], counts, models),
        "latency_note": figures["latency_note"],
        "catalogue": (
            {"size": figures["dataset"]["items"], "largest": max(counts), "asked": asked}
            if counts and max(counts) < asked
            else None
        ),
        "ratio": ratio,
        "paper_ratio": PAPER_TRAIN_RATIO,
        "ratio_passed": ratio is not None and ratio <= PAPER_TRAIN_RATIO,
        "k_rows": figures["k_sensitivity"],
        "meta": (
            {"used": len(set(meta["meta_index"])), "total": len(meta["meta_vectors"])}
            if meta is not None
            else None
        ),
        "figures": figures["figures"],
    }


def render_markdown(
    figures: ReportFigures, *, notes: str | None, generated_on: str, commit: str
) -> str:
    """docs/results/<dataset>.md's text; `notes`: the hand-written notes, appended."""
    return render(
        "report.md.j2",
        **markdown_context(figures),
        notes=notes,
        generated_on=generated_on,
        commit=commit,
    )


def write_report(figures: ReportFigures, out: Path) -> Path:
    """Write <out>/<dataset>.md, .json and the PNGs; return the markdown's path."""
    dataset = figures["dataset"]["key"]
    return write_markdown_report(figures, out, dataset, render_markdown, draw_plots)
