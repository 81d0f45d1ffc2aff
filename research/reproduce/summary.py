"""The figures of a reproduction's report, computed from its runs: per-model means over seeds,
FIT's sensitivity to K and the paper's ordering checked on our table. They are the report's JSON;
the markdown and the plots are drawn from them alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from offline_jobs.data.dataset import InteractionData
from offline_jobs.training.config import TrainConfig
from prerank_model.config import ModelConfig
from research.reproduce.paper import BASELINE, FULL_ML1M_USERS, PAPER, display_name
from research.reproduce.plan import ReproduceConfig
from research.reproduce.text import render

SUMMARISED = ("test_auc", "test_logloss", "seconds_per_epoch", "bytes_per_item")


class DatasetFacts(TypedDict):
    """What the figures came from."""

    key: str
    label: str
    users: int
    items: int
    samples: dict[str, int]
    fingerprint: str
    details: dict[str, Any]


class ReportFigures(TypedDict):
    """Every figure of one dataset's report: docs/results/<dataset>.json."""

    dataset: DatasetFacts
    config: dict[str, Any]  # ReproduceConfig
    train: dict[str, Any]  # TrainConfig
    model: dict[str, Any]  # ModelConfig
    paper: dict[str, dict[str, float | str]]
    summary: dict[str, dict[str, float]]  # model -> means and stds, main runs
    leaky_summary: dict[str, dict[str, float]]  # the same with the leaky features
    ordering: list[str]  # the paper's ordering checked, markdown lines
    fit_over_two_tower_train_time: float | None
    timing: dict[str, dict[str, float]]  # model -> side-by-side training-step timing
    k_sensitivity: list[dict[str, Any]]
    latency: list[dict[str, Any]]  # one row per (model, candidates)
    latency_note: str | None  # why latency was not measured
    runs: list[dict[str, Any]]
    meta_matrix: dict[str, Any] | None
    figures: dict[str, str]  # plot -> PNG file name


def dataset_label(dataset: str, data: InteractionData, max_ratings: int | None) -> str:
    """What the figures came from, in words that cannot pass for the paper's full-set data."""
    users = np.unique(data.user_ids)
    slice_note = f", a slice: the first {max_ratings:,} ratings only" if max_ratings else ""
    if dataset == "ml-1m":
        span = f"users {users.min()}-{users.max()}"
        complete = users.max() >= FULL_ML1M_USERS and not max_ratings
        return f"ML-1M{'' if complete else ', ' + span}{slice_note}"
    return f"ML-100K{slice_note}" if max_ratings else "ML-100K (complete)"


def dataset_facts(dataset: str, data: InteractionData, max_ratings: int | None) -> DatasetFacts:
    return {
        "key": dataset,
        "label": dataset_label(dataset, data, max_ratings),
        "users": data.num_users,
        "items": data.num_items,
        "samples": {name: int(idx.size) for name, idx in data.splits.items()},
        "fingerprint": data.fingerprint(),
        "details": data.details,
    }


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    array = np.array(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def summarise(runs: Sequence[dict[str, Any]], **match: object) -> dict[str, dict[str, float]]:
    """model -> mean and std of the figures over the runs matching `match` (e.g. leaky=False)."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if all(run.get(key) == value for key, value in match.items()):
            by_model.setdefault(run["model"], []).append(run)
    out = {}
    for model, group in by_model.items():
        row: dict[str, float] = {"runs": len(group)}
        for figure in SUMMARISED:
            row[figure], row[f"{figure}_std"] = mean_and_std([run[figure] for run in group])
        out[model] = row
    return out


def main_summary(
    runs: Sequence[dict[str, Any]], timing: dict[str, dict[str, float]], default_k: int
) -> dict[str, dict[str, float]]:
    """The main table: runs at the configured K without the leaky features, each model's
    training time replaced by the side-by-side timing, which a burst of load on the machine
    cannot skew towards one model as it can the runs' wall clocks."""
    swept = [r for r in runs if r["model"] == "fit" and r["k"] != default_k]
    main = summarise([r for r in runs if r not in swept], leaky=False)
    for name, measured in timing.items():
        if name in main:
            main[name]["seconds_per_epoch"] = measured["seconds_per_epoch"]
            main[name]["seconds_per_epoch_std"] = 0.0
    return main


def k_table(runs: Sequence[dict[str, Any]], default_k: int) -> list[dict[str, Any]]:
    """FIT's figures per K: the sweep's runs and the main FIT runs (the configured K)."""
    by_k: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        if run["model"] == "fit" and not run["leaky"]:
            by_k.setdefault(int(run["k"]), []).append(run)
    rows = []
    for k in sorted(by_k):
        group = by_k[k]
        auc, auc_std = mean_and_std([r["test_auc"] for r in group])
        rows.append(
            {
                "k": k,
                "runs": len(group),
                "test_auc": auc,
                "test_auc_std": auc_std,
                "test_logloss": float(np.mean([r["test_logloss"] for r in group])),
                "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in group])),
                "default": k == default_k,
            }
        )
    return rows


@dataclass(frozen=True)
class Comparison:
    """One model's AUC set against FIT's or the baseline's, and whether the paper's order holds."""

    name: str
    auc: float
    passed: bool


def ordering_checks(main: dict[str, dict[str, float]], models: Sequence[str]) -> list[str]:
    """The paper's ordering on our table, one markdown line per check: FIT first, Two-Tower
    last, ablations below FIT, FIT at the paper's AUC; none without FIT and another model of
    the paper's table."""
    table = [m for m in models if m in main and m in PAPER]
    if "fit" not in main or len(table) < 2:
        return []
    auc = {m: main[m]["test_auc"] for m in table}
    fit = auc["fit"]
    best = max((m for m in table if m != "fit"), key=auc.__getitem__)
    worst = None
    if BASELINE in auc:
        lowest = min((m for m in table if m != BASELINE), key=auc.__getitem__)
        worst = Comparison(display_name(lowest), auc[lowest], auc[BASELINE] < auc[lowest])
    ablations = [
        Comparison(display_name(m), main[m]["test_auc"], main[m]["test_auc"] < fit)
        for m in models
        if m in main and m.startswith("fit_")
    ]
    paper_fit = float(PAPER["fit"]["auc"])
    text = render(
        "ordering.md.j2",
        fit=fit,
        best_other=Comparison(display_name(best), auc[best], fit > auc[best]),
        baseline=auc.get(BASELINE),
        worst_other=worst,
        ablations=ablations,
        paper_fit=paper_fit,
        meets_paper=fit >= paper_fit,
    )
    return text.splitlines()


def train_time_ratio(main: dict[str, dict[str, float]]) -> float | None:
    """FIT / Two-Tower training time per epoch; None unless both ran."""
    if "fit" not in main or BASELINE not in main:
        return None
    return main["fit"]["seconds_per_epoch"] / main[BASELINE]["seconds_per_epoch"]


def figure_files(dataset: str) -> dict[str, str]:
    """plot -> PNG file name, beside the markdown."""
    return {
        "auc": f"{dataset}-auc.png",
        "efficiency": f"{dataset}-efficiency.png",
        "k": f"{dataset}-k.png",
        "meta_matrix": f"{dataset}-meta-matrix.png",
    }


def report_figures(
    *,
    dataset: str,
    data: InteractionData,
    runs: Sequence[dict[str, Any]],
    timing: dict[str, dict[str, float]],
    latency: Sequence[dict[str, Any]],
    latency_note: str | None,
    meta_matrix: dict[str, Any] | None,
    config: ReproduceConfig,
    train: TrainConfig,
    model: ModelConfig,
) -> ReportFigures:
    """Every figure of `dataset`'s report from its runs and measurements."""
    main = main_summary(runs, timing, model.num_meta_queries)
    models = [m for m in config.models if m in main]
    return {
        "dataset": dataset_facts(dataset, data, config.max_ratings),
        "config": config.model_dump(mode="json"),
        "train": train.model_dump(mode="json"),
        "model": model.model_dump(mode="json"),
        "paper": PAPER,
        "summary": main,
        "leaky_summary": summarise(runs, leaky=True),
        "ordering": ordering_checks(main, models),
        "fit_over_two_tower_train_time": train_time_ratio(main),
        "timing": timing,
        "k_sensitivity": k_table(runs, model.num_meta_queries),
        "latency": list(latency),
        "latency_note": latency_note,
        "runs": list(runs),
        "meta_matrix": meta_matrix,
        "figures": figure_files(dataset),
    }
