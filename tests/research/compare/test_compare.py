"""`python -m research.compare` on a tiny spec with string ids (the worked example's shop): the
report's markdown, JSON and plot are written from real runs timed through the real service; and
the Pareto front and the recommendation follow their rules on rows made up to test them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.example import write_example
from offline_jobs.settings import JobSettings
from research.compare.report import render_markdown
from research.compare.summary import (
    LATENCY_COST,
    TRAINING_COST,
    ModelRow,
    pareto_front,
    recommend,
)
from research.markdown import read_notes
from tests.conftest import REPO_ROOT, job_env

MODELS = ("two_tower", "fit", "fit_no_lss")
SEEDS = ("1", "2")
TOLERANCE = 0.001


def row(name: str, auc: float, p50: float, std: float = 0.0, epoch: float = 1.0) -> ModelRow:
    return {
        "name": name,
        "runs": 1,
        "test_auc": auc,
        "test_auc_std": std,
        "test_logloss": 0.5,
        "test_logloss_std": 0.0,
        "rela_impr": None,
        "seconds_per_epoch": epoch,
        "p50_ms": p50,
        "p99_ms": p50,
        "bytes_per_item": 64.0,
        "pareto": False,
    }


def test_the_front_holds_the_models_none_beats_on_both() -> None:
    rows = [
        row("two_tower", 0.860, 2.0),
        row("dat", 0.870, 3.0),
        row("cold", 0.865, 4.0),  # DAT is more accurate and faster
        row("fit", 0.875, 5.0),
        row("ranktower", 0.875, 6.0),  # as accurate as FIT, slower
    ]
    assert pareto_front(rows, LATENCY_COST) == ["two_tower", "dat", "fit"]
    # against training time every model costs the same: only the most accurate stay
    assert pareto_front(rows, TRAINING_COST) == ["fit", "ranktower"]


def test_the_most_accurate_is_recommended_when_the_next_is_beyond_seed_noise() -> None:
    rows = [row("two_tower", 0.860, 2.0), row("dat", 0.870, 3.0), row("fit", 0.875, 5.0)]
    chosen = recommend(rows, LATENCY_COST, TOLERANCE, None)
    assert chosen is not None
    assert (chosen["model"], chosen["runner_up"]) == ("fit", "dat")
    assert chosen["runner_up_gap"] == pytest.approx(0.005)
    assert "**FIT**: the most accurate" in chosen["reason"]


def test_a_cheaper_model_within_seed_noise_is_recommended() -> None:
    # FIT's std over seeds (0.002) is wider than the tolerance: DAT's 0.0015 gap is a tie
    rows = [row("dat", 0.8735, 3.0), row("fit", 0.875, 5.0, std=0.002)]
    chosen = recommend(rows, LATENCY_COST, TOLERANCE, None)
    assert chosen is not None
    assert (chosen["model"], chosen["best"], chosen["noise"]) == ("dat", "fit", 0.002)
    assert (
        "within seed noise" in chosen["reason"] and "3.00 ms p50 against 5.00" in chosen["reason"]
    )


def test_ablations_are_not_offered_and_the_budget_is_kept() -> None:
    rows = [row("two_tower", 0.860, 2.0), row("fit", 0.875, 5.0), row("fit_no_mqm", 0.880, 1.0)]
    assert recommend(rows, LATENCY_COST, TOLERANCE, None)["model"] == "fit"  # type: ignore[index]
    within = recommend(rows, LATENCY_COST, TOLERANCE, budget_ms=4.0)
    assert within is not None
    assert (within["model"], within["over_budget"]) == ("two_tower", ["fit"])
    assert "Left out for the latency budget (4.0 ms p50): FIT." in within["reason"]
    assert recommend(rows, LATENCY_COST, TOLERANCE, budget_ms=1.0) is None


@pytest.fixture(scope="module")
def report(
    tmp_path_factory: pytest.TempPathFactory, tiny_data: InteractionData, job_settings: JobSettings
) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("compare")
    shop = write_example(tiny_data, root / "shop")
    settings = job_settings.model_copy(
        update={"redis_key_prefix": f"{job_settings.redis_key_prefix}compare:"}
    )
    command = [
        *(str(shop.spec), "--models", *MODELS, "--seeds", *SEEDS, "--epochs", "1"),
        *("--latency-requests", "5", "--timing-rounds", "2", "--timing-steps", "5", "--quiet"),
        *("--results-dir", str(root / "results"), "--docs-dir", str(root / "docs")),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "research.compare", *command],
        cwd=REPO_ROOT,
        env=job_env(settings),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    docs = root / "docs"
    return docs, json.loads((docs / "compare-shop.json").read_text())


def test_the_report_is_written_from_real_runs(report: tuple[Path, dict[str, Any]]) -> None:
    docs, figures = report
    assert [r["name"] for r in figures["rows"]] == list(MODELS)
    assert len(figures["runs"]) == len(MODELS) * len(SEEDS)
    fit_runs = [r["test_auc"] for r in figures["runs"] if r["model"] == "fit"]
    fit = next(r for r in figures["rows"] if r["name"] == "fit")
    assert fit["test_auc"] == pytest.approx(sum(fit_runs) / len(fit_runs))
    assert next(r for r in figures["rows"] if r["name"] == "two_tower")["rela_impr"] == 0.0
    for model in figures["rows"]:
        assert 0.0 < model["test_auc"] < 1.0 and model["seconds_per_epoch"] > 0
        assert 0.0 < model["p50_ms"] <= model["p99_ms"] and model["bytes_per_item"] > 0
    assert all(r["errors"] == 0 for r in figures["latency"])  # the shop's string ids were known
    assert figures["cost_key"] == LATENCY_COST
    front = [r["name"] for r in figures["rows"] if r["pareto"]]
    assert front and figures["recommendation"]["model"] in front
    assert (docs / "compare-shop-pareto.png").stat().st_size > 10_000


def test_the_markdown_names_the_split_the_table_and_the_choice(
    report: tuple[Path, dict[str, Any]],
) -> None:
    docs, figures = report
    markdown = (docs / "compare-shop.md").read_text()
    assert "Split: **temporal**, 0.1 validation and 0.1 test" in markdown
    assert "| FIT w/o LSS |" in markdown and "| Pareto front |" in markdown
    assert figures["recommendation"]["reason"] in markdown
    assert "![Test AUC against cost, the Pareto front](compare-shop-pareto.png)" in markdown


COMMITTED = sorted((REPO_ROOT / "docs" / "results").glob("compare-*.json"))
GENERATED = re.compile(r"on (\d{4}-\d\d-\d\d), commit `([^`]*)`")


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_a_committed_report_renders_back_from_its_json(path: Path) -> None:
    figures = json.loads(path.read_text())
    committed = path.with_suffix(".md").read_text()
    generated = GENERATED.search(committed.splitlines()[2])
    assert generated is not None
    notes = read_notes(path.parent, figures["report"])
    text = render_markdown(figures, notes=notes, generated_on=generated[1], commit=generated[2])
    assert text == committed
    rows, key, config = figures["rows"], figures["cost_key"], figures["config"]
    assert {r["name"] for r in rows if r["pareto"]} == set(pareto_front(rows, key))
    chosen = recommend(rows, key, config["auc_tolerance"], config["latency_budget_ms"])
    assert chosen == figures["recommendation"]
