"""A comparison on one dataset spec: its data read once, every (model, seed) run trained and
evaluated (`research.reproduce.runs`, resumed from results_dir), each model's first-seed bundle
timed through the real service (`reproduce.latency`), the training step timed side by side
(`reproduce.timing`), then the report (`report`)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.sources import read_dataset_spec
from offline_jobs.data.spec import DatasetSpec
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
TIMED = ("models", "seeds", "timing_rounds", "timing_steps")
SERVED = ("models", "seeds", "latency_candidates", "latency_requests", "latency_warmup_requests")
# ^ the CompareConfig fields the training time and the latency depend on, beside the runs


def kept_or_measured(path: Path, key: str, measure: Callable[[], tuple[Any, bool]]) -> Any:
    """What `path` kept under `key`, else `measure()`'s figures, kept there when it says they
    may be (an interrupted comparison resumes without measuring again)."""
    if path.is_file():
        kept = json.loads(path.read_text())
        if kept.get("key") == key:
            return kept["figures"]
    figures, keep = measure()
    if keep:
        write_json(path, {"key": key, "figures": figures})
    return figures


def measurement_key(results: list[dict[str, Any]], config: CompareConfig, fields: Any) -> str:
    """The runs' fingerprints and the fields of `config` a measurement depends on, hashed."""
    payload = {
        "runs": sorted(run["fingerprint"] for run in results),
        "config": config.model_dump(mode="json", include=set(fields)),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def measurements(
    runs: Runs, name: str, results: list[dict[str, Any]], config: CompareConfig
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]], str | None]:
    """(training time, latency rows, why no latency), each kept in results_dir/<name>/ as soon
    as measured and read back while the runs and settings are the same (a latency that could
    not be measured is not kept: the next invocation tries again)."""
    folder = runs.run_dir(name)

    def serve() -> tuple[Any, bool]:
        rows, note = latency_or_note(runs, name, SCOPE)
        return [rows, note], note is None or not config.measure_latency

    latency, note = kept_or_measured(
        folder / "latency.json",
        measurement_key(results, config, (*SERVED, "measure_latency")),
        serve,
    )
    timing = kept_or_measured(
        folder / "timing.json",
        measurement_key(results, config, TIMED),
        lambda: (measure_training_time(runs, name, config.models), True),
    )
    return timing, latency, note


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


def compare(settings: JobSettings, config: CompareConfig, *, progress: bool) -> Path:
    """Every run of `config`, its efficiency measurements, then its report; the markdown's
    path."""
    spec = read_dataset_spec(settings, config.spec)
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
