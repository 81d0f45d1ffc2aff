"""The figures of a comparison, computed from its runs: one row per model (means over seeds,
RelaImpr against the Two-Tower, side-by-side training time, `/prerank` p50, bytes per item), the
accuracy/latency Pareto front and the model recommended. They are the report's JSON; the
markdown and the plot are drawn from them alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.spec import DatasetSpec
from offline_jobs.training.config import TrainConfig
from prerank_model.config import ModelConfig
from research.compare.plan import REPORT_PREFIX, CompareConfig
from research.compare.text import render
from research.reproduce.paper import BASELINE, rela_impr
from research.reproduce.plan import TABLE_MODELS
from research.reproduce.summary import main_summary
from research.settings import REPO_ROOT

LATENCY_COST = "p50_ms"  # the cost axis of the front when /prerank was timed
TRAINING_COST = "seconds_per_epoch"  # else the training time, which is always measured
COST_UNITS = {LATENCY_COST: "ms p50", TRAINING_COST: "s per training epoch"}


class ModelRow(TypedDict):
    """One model's line of the table."""

    name: str
    runs: int
    test_auc: float
    test_auc_std: float
    test_logloss: float
    test_logloss_std: float
    rela_impr: float | None  # percent over the Two-Tower's AUC; None when it did not run
    seconds_per_epoch: float
    p50_ms: float | None  # at the first configured candidate count
    p99_ms: float | None
    bytes_per_item: float
    pareto: bool


class Recommendation(TypedDict):
    """The model to serve and the figures its reason quotes."""

    model: str
    best: str  # the most accurate eligible model
    gap: float  # best's AUC - model's AUC
    noise: float  # the AUC gap read as a tie
    cost_key: str
    cost: float
    best_cost: float
    runner_up: str | None  # the next most accurate eligible model, when the best is chosen
    runner_up_gap: float | None
    over_budget: list[str]  # models left out for the latency budget
    reason: str  # the sentence the report gives (templates/recommendation.md.j2)


class CompareFigures(TypedDict):
    """Every figure of one comparison: docs/results/compare-<name>.json."""

    report: str  # the file name stem
    dataset: dict[str, Any]
    config: dict[str, Any]  # CompareConfig
    train: dict[str, Any]  # TrainConfig
    model: dict[str, Any]  # ModelConfig
    rows: list[ModelRow]
    cost_key: str
    latency_candidates: int | None  # the candidate count of the p50 column, as asked
    latency_scored: int | None  # as scored: no more than the catalogue holds
    recommendation: Recommendation | None
    summary: dict[str, dict[str, float]]
    timing: dict[str, dict[str, float]]
    latency: list[dict[str, Any]]
    latency_note: str | None
    runs: list[dict[str, Any]]
    figures: dict[str, str]


def dataset_facts(
    spec: DatasetSpec, data: InteractionData, config: CompareConfig
) -> dict[str, Any]:
    """What the figures came from: the spec (its path as given), its split and the data's size."""
    path = config.spec.resolve()
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    return {
        "key": spec.name,
        "spec": str(shown),
        "split": spec.split.model_dump(mode="json"),
        "history": spec.history.length,
        "users": data.num_users,
        "items": data.num_items,
        "samples": {name: int(idx.size) for name, idx in data.splits.items()},
        "positive_share": float(data.labels.mean()),
        "fingerprint": data.fingerprint(),
        "details": data.details,
    }


def model_rows(
    main: dict[str, dict[str, float]],
    latency: Sequence[dict[str, Any]],
    candidates: int | None,
    models: Sequence[str],
) -> list[ModelRow]:
    """The table, in `models` order (the Pareto column still unset)."""
    timed = {r["model"]: r for r in latency if r["candidates_requested"] == candidates}
    base = main.get(BASELINE, {}).get("test_auc")
    rows: list[ModelRow] = []
    for name in models:
        figures, p = main[name], timed.get(name)
        rows.append(
            {
                "name": name,
                "runs": int(figures["runs"]),
                "test_auc": figures["test_auc"],
                "test_auc_std": figures["test_auc_std"],
                "test_logloss": figures["test_logloss"],
                "test_logloss_std": figures["test_logloss_std"],
                "rela_impr": None if base is None else rela_impr(figures["test_auc"], base),
                "seconds_per_epoch": figures["seconds_per_epoch"],
                "p50_ms": None if p is None else p["p50_ms"],
                "p99_ms": None if p is None else p["p99_ms"],
                "bytes_per_item": figures["bytes_per_item"],
                "pareto": False,
            }
        )
    return rows


def cost(row: ModelRow, key: str) -> float:
    value = row[key]  # type: ignore[literal-required]
    assert isinstance(value, float | int), f"{row['name']} has no {key}"
    return float(value)


def dominates(a: ModelRow, b: ModelRow, key: str) -> bool:
    """`a` is at least as accurate and as cheap as `b`, and better in one of the two."""
    no_worse = a["test_auc"] >= b["test_auc"] and cost(a, key) <= cost(b, key)
    return no_worse and (a["test_auc"] > b["test_auc"] or cost(a, key) < cost(b, key))


def pareto_front(rows: Sequence[ModelRow], key: str) -> list[str]:
    """The models no other model dominates on (AUC up, `key` down), cheapest first."""
    front = [r for r in rows if not any(dominates(o, r, key) for o in rows if o is not r)]
    return [r["name"] for r in sorted(front, key=lambda r: cost(r, key))]


def recommend(
    rows: Sequence[ModelRow], key: str, tolerance: float, budget_ms: float | None
) -> Recommendation | None:
    """The cheapest model whose AUC is within seed noise of the most accurate one's, among the
    paper's six models (FIT's ablations explain FIT; they are not offered) that meet the latency
    budget. Seed noise: `tolerance`, or the most accurate model's std over seeds if larger."""
    offered = [r for r in rows if r["name"] in TABLE_MODELS] or list(rows)
    over = [
        r["name"]
        for r in offered
        if budget_ms is not None and key == LATENCY_COST and cost(r, key) > budget_ms
    ]
    eligible = [r for r in offered if r["name"] not in over]
    if not eligible:
        return None
    by_auc = sorted(eligible, key=lambda r: r["test_auc"], reverse=True)
    best = by_auc[0]
    noise = max(tolerance, best["test_auc_std"])
    ties = [r for r in eligible if best["test_auc"] - r["test_auc"] <= noise]
    chosen = min(ties, key=lambda r: (cost(r, key), -r["test_auc"]))
    runner_up = by_auc[1] if chosen is best and len(by_auc) > 1 else None
    facts = {
        "model": chosen["name"],
        "best": best["name"],
        "gap": best["test_auc"] - chosen["test_auc"],
        "noise": noise,
        "cost_key": key,
        "cost": cost(chosen, key),
        "best_cost": cost(best, key),
        "runner_up": None if runner_up is None else runner_up["name"],
        "runner_up_gap": None if runner_up is None else best["test_auc"] - runner_up["test_auc"],
        "over_budget": over,
    }
    reason = render(
        "recommendation.md.j2", **facts, chosen=chosen, budget_ms=budget_ms, unit=COST_UNITS[key]
    )
    return Recommendation(**facts, reason=reason.strip())  # type: ignore[typeddict-item]


def figure_files(report: str) -> dict[str, str]:
    """plot -> PNG file name, beside the markdown."""
    return {"pareto": f"{report}-pareto.png"}


def compare_figures(
    *,
    spec: DatasetSpec,
    data: InteractionData,
    runs: Sequence[dict[str, Any]],
    timing: dict[str, dict[str, float]],
    latency: Sequence[dict[str, Any]],
    latency_note: str | None,
    config: CompareConfig,
    train: TrainConfig,
    model: ModelConfig,
) -> CompareFigures:
    """Every figure of the comparison on `spec` from its runs and measurements."""
    main = main_summary(runs, timing, model.num_meta_queries)
    models = [m for m in config.models if m in main]
    candidates = config.latency_candidates[0] if latency else None
    rows = model_rows(main, latency, candidates, models)
    key = LATENCY_COST if latency and all(r["p50_ms"] is not None for r in rows) else TRAINING_COST
    front = pareto_front(rows, key)
    for row in rows:
        row["pareto"] = row["name"] in front
    report = f"{REPORT_PREFIX}{spec.name}"
    return {
        "report": report,
        "dataset": dataset_facts(spec, data, config),
        "config": config.model_dump(mode="json"),
        "train": train.model_dump(mode="json"),
        "model": model.model_dump(mode="json"),
        "rows": rows,
        "cost_key": key,
        "latency_candidates": candidates,
        "latency_scored": next(
            (r["candidates"] for r in latency if r["candidates_requested"] == candidates), None
        ),
        "recommendation": recommend(rows, key, config.auc_tolerance, config.latency_budget_ms),
        "summary": main,
        "timing": timing,
        "latency": list(latency),
        "latency_note": latency_note,
        "runs": list(runs),
        "figures": figure_files(report),
    }
