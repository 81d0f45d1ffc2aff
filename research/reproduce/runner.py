"""Reproduce the paper's MovieLens tables: every model for a list of seeds, FIT's sensitivity to
K, the learned meta matrix, and the efficiency table measured here.

Per dataset, in order: the training runs (`runs`, resumed from results_dir), the meta matrix of
the first FIT run (`meta_matrix`), `/prerank` latency through the real service (`latency`), the
training step timed side by side (`timing`), then the report under docs_dir (`report`).
"""

from __future__ import annotations

import logging
from typing import Any

from tqdm import tqdm

from offline_jobs.settings import JobSettings
from prerank_model.models.fit import FIT
from research.reproduce.latency import measure_latency
from research.reproduce.meta_matrix import meta_matrix_points
from research.reproduce.plan import ReproduceConfig, RunSpec
from research.reproduce.report import write_report
from research.reproduce.runs import Reproduction, Runs
from research.reproduce.summary import report_figures
from research.reproduce.timing import measure_training_time

log = logging.getLogger(__name__)


def latency_or_note(
    runs: Runs, dataset: str, scope: str = "reproduce"
) -> tuple[list[dict[str, Any]], str | None]:
    """The latency rows, and why there are none when there are none (for the report)."""
    if not runs.config.measure_latency:
        return [], "not measured (--no-latency)"
    try:
        return measure_latency(runs, dataset, runs.config.models, scope), None
    except Exception as exc:  # Redis or the service unavailable: the table says so
        log.exception("latency not measured")
        return [], f"not measured: {exc}"


def reproduce_dataset(reproduction: Reproduction, dataset: str) -> None:
    """Every run of `dataset`, its efficiency measurements, then its report."""
    config = reproduction.config
    specs = tqdm(
        list(reproduction.specs(dataset)),
        desc=f"reproduce {dataset}",
        disable=not reproduction.progress,
    )
    runs = [reproduction.result(spec, keep_weights=keep) for spec, keep in specs]
    data = reproduction.data(dataset)
    meta = None
    if "fit" in config.models:
        fit = reproduction.load_model(RunSpec(dataset, "fit", config.seeds[0]))
        assert isinstance(fit, FIT)
        meta = meta_matrix_points(fit, data)
    latency, latency_note = latency_or_note(reproduction, dataset)
    timing = measure_training_time(reproduction, dataset, config.models)
    figures = report_figures(
        dataset=dataset,
        data=data,
        runs=runs,
        timing=timing,
        latency=latency,
        latency_note=latency_note,
        meta_matrix=meta,
        config=config,
        train=reproduction.train,
        model=reproduction.settings.model,
    )
    write_report(figures, config.docs_dir)


def reproduce(settings: JobSettings, config: ReproduceConfig, *, progress: bool) -> None:
    """Every dataset of `config`, one after the other."""
    reproduction = Reproduction(settings, config, progress=progress)
    for dataset in config.datasets:
        reproduce_dataset(reproduction, dataset)
