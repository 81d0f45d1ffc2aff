"""A comparison on one dataset spec: its data read once, every (model, seed) run trained and
evaluated (`research.reproduce.runs`, resumed from results_dir), each model's first-seed bundle
timed through the real service (`reproduce.latency`), the training step timed side by side
(`reproduce.timing`), then the report (`report`)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.movielens_files import ensure_shipped_tables
from offline_jobs.data.spec import DatasetSpec, load_spec
from offline_jobs.data.spec_data import load_spec_data
from offline_jobs.settings import JobSettings
from research.compare.plan import CompareConfig
from research.compare.report import write_compare_report
from research.compare.summary import compare_figures
from research.reproduce.plan import RunSpec
from research.reproduce.runner import latency_or_note
from research.reproduce.runs import DataLoader, Runs, write_json
from research.reproduce.timing import measure_training_time

log = logging.getLogger(__name__)

SCOPE = "compare"  # Redis keys of the timed service: <prefix>compare:<spec name>:
MEASURED = {
    "models",
    "seeds",
    "timing_rounds",
    "timing_steps",
    "measure_latency",
    "latency_candidates",
    "latency_requests",
    "latency_warmup_requests",
}  # the CompareConfig fields the timing and latency depend on (beside the runs themselves)


def spec_loader(spec: DatasetSpec) -> DataLoader:
    """The runs' data: the spec's, read once (a spec has no leaky variant)."""
    loaded: list[InteractionData] = []

    def load(dataset: str, leaky: bool) -> InteractionData:
        if leaky or dataset != spec.name:
            raise ValueError(f"a comparison reads only {spec.name!r}, without leaky features")
        if not loaded:
            loaded.append(load_spec_data(spec))
        return loaded[0]

    return load


def read_spec(settings: JobSettings, path: Path) -> DatasetSpec:
    """The spec; a shipped MovieLens spec's tables are converted first when missing."""
    spec = load_spec(path)
    sources = {
        "movielens-1m": settings.ml1m.data_dir,
        "movielens-100k": settings.ml100k.data_dir,
    }
    if ensure_shipped_tables(spec, sources):
        log.info("converted the MovieLens files for %s", path)
    return spec


def measurements(
    runs: Runs, name: str, results: list[dict[str, Any]], config: CompareConfig
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]], str | None]:
    """(training time, latency rows, why no latency): read back from results_dir/<name>/
    measurements.json when taken for the same runs and settings, else taken and kept there
    (not when the latency could not be measured: the next invocation tries again)."""
    key = hashlib.sha256(
        json.dumps(
            {
                "runs": sorted(run["fingerprint"] for run in results),
                "config": config.model_dump(mode="json", include=MEASURED),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    path = runs.run_dir(name) / "measurements.json"
    if path.is_file():
        kept = json.loads(path.read_text())
        if kept.get("key") == key:
            return kept["timing"], kept["latency"], kept["latency_note"]
    latency, note = latency_or_note(runs, name, SCOPE)
    timing = measure_training_time(runs, name, config.models)
    if note is None or not config.measure_latency:
        write_json(path, {"key": key, "timing": timing, "latency": latency, "latency_note": note})
    return timing, latency, note


def compare(settings: JobSettings, config: CompareConfig, *, progress: bool) -> Path:
    """Every run of `config`, its efficiency measurements, then its report; the markdown's
    path."""
    spec = read_spec(settings, config.spec)
    runs = Runs(settings, config, spec_loader(spec), progress=progress)
    plan = [
        (RunSpec(spec.name, model, seed), seed == config.seeds[0])
        for model in config.models
        for seed in config.seeds
    ]
    results = [
        runs.result(run, keep_weights=keep and config.measure_latency)
        for run, keep in tqdm(plan, desc=f"compare {spec.name}", disable=not progress)
    ]
    timing, latency, latency_note = measurements(runs, spec.name, results, config)
    figures = compare_figures(
        spec=spec,
        data=runs.data(spec.name),
        runs=results,
        timing=timing,
        latency=latency,
        latency_note=latency_note,
        config=config,
        train=runs.train,
        model=settings.model,
    )
    return write_compare_report(figures, config.docs_dir)
