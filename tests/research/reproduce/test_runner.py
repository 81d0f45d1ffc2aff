"""`python -m research.reproduce` on a slice of the real ML-100K: every table, JSON and plot is
written, each run's figures are real, and a second invocation resumes instead of retraining."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL, REPO_ROOT

DATA_DIR = Path(
    os.environ.get("PRERANK_ML100K_DIR", REPO_ROOT.parent / "shared" / "data" / "ml-100k")
)
MODELS = ("two_tower", "cold", "fit", "fit_no_mqm")
SEEDS = ("1", "2")


def reproduce(results: Path, docs: Path, key_prefix: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRERANK_")}
    env |= {
        "PRERANK_REDIS_URL": REDIS_URL,
        "PRERANK_REDIS_KEY_PREFIX": key_prefix,
        "PRERANK_ML100K__DATA_DIR": str(DATA_DIR),
        "PRERANK_MODEL__TOWER_HIDDEN": "[32]",
        "PRERANK_PARITY_USERS": "8",
    }
    command = [
        *("--datasets", "ml-100k", "--max-ratings", "6000", "--epochs", "1"),
        *("--models", *MODELS, "--seeds", *SEEDS, "--leaky-seeds", "1", "--k", "4"),
        *("--latency-candidates", "100", "2000", "--latency-requests", "5"),
        *("--results-dir", str(results), "--docs-dir", str(docs), "--quiet"),
    ]
    return subprocess.run(
        [sys.executable, "-m", "research.reproduce", *command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, key_prefix: str) -> tuple[Path, Path, str]:
    if not DATA_DIR.is_dir():
        pytest.skip(f"no ML-100K data at {DATA_DIR} (set PRERANK_ML100K_DIR)")
    root = tmp_path_factory.mktemp("reproduce")
    prefix = f"{key_prefix}repro:"
    result = reproduce(root / "results", root / "docs", prefix)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "results", root / "docs", prefix


def test_writes_the_table_the_json_and_every_plot(first_run) -> None:
    _, docs, _ = first_run
    names = {p.name for p in docs.iterdir()}
    assert {"ml-100k.md", "ml-100k.json"} <= names
    for plot in ("auc", "efficiency", "k", "meta-matrix"):
        assert (docs / f"ml-100k-{plot}.png").stat().st_size > 10_000
    markdown = (docs / "ml-100k.md").read_text()
    assert "ML-100K, a slice: the first 6,000 ratings" in markdown  # never passed off as full
    assert "| FIT | 0.9225 | 0.3766 | 14.34% |" in markdown  # the paper's row beside ours
    assert "FIT / Two-Tower training time per epoch" in markdown


def test_every_figure_comes_from_a_real_run(first_run) -> None:
    _, docs, _ = first_run
    report = json.loads((docs / "ml-100k.json").read_text())
    runs = report["runs"]
    # 4 models x 2 seeds, 4 leaky runs, FIT at K=4
    assert len(runs) == len(MODELS) * len(SEEDS) + len(MODELS) + 1
    for run in runs:
        assert 0.0 < run["test_auc"] < 1.0 and run["train_seconds"] > 0
    fit = [r for r in runs if r["model"] == "fit" and not r["leaky"] and r["k"] == 32]
    assert report["summary"]["fit"]["test_auc"] == pytest.approx(
        sum(r["test_auc"] for r in fit) / len(fit)
    )
    assert {r["k"] for r in report["k_sensitivity"]} == {4, 32}
    latency = report["latency"]
    assert {(r["model"], r["candidates"]) for r in latency} == {
        (m, n) for m in MODELS for n in (100, report["dataset"]["items"])
    }
    assert all(r["errors"] == 0 and 0 < r["p50_ms"] <= r["p99_ms"] for r in latency)
    meta = report["meta_matrix"]
    assert len(meta["items"]) == report["dataset"]["items"] == len(meta["meta_index"])
    assert len(meta["meta_vectors"]) == 32


def test_a_second_run_resumes_and_retrains_only_what_is_missing(first_run, tmp_path: Path) -> None:
    results, _, prefix = first_run
    runs = sorted((results / "ml-100k").glob("*.json"))
    written = {p: p.stat().st_mtime_ns for p in runs}
    missing = results / "ml-100k" / "fit-s2.json"
    missing.unlink()
    result = reproduce(results, tmp_path / "docs", prefix)
    assert result.returncode == 0, result.stderr[-3000:]
    changed = [p.name for p in runs if p.stat().st_mtime_ns != written[p]]
    assert changed == ["fit-s2.json"]
