"""``python -m research.bench`` (``make bench``): how far /prerank sits above its floor, in one run
on one machine.

Starts the echo floor (`research.bench.echo`: the service's stack and request path without the
model), the real service serving the newest FIT bundle and the real service serving the newest
Two-Tower bundle, each from its bundle directory with Redis unused, and drives each with a
closed-loop client in every wire format (JSON, columnar JSON, MessagePack) at every candidate
count, in rounds that rotate the order of the turns. Then times FIT's ONNX scorer in process
against its FLOPs and the machine's single-core GEMM rate, the naive path (the full model once per
(user, item) pair, in torch) against decoupled scoring, and FIT and the echo floor with 2 workers
each under an open-loop load at increasing rates in each format. Writes docs/benchmarks/latency.md
and latency.png and prints each goal's ratio, PASS or MISS.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from prerank_contract.manifest import ITEM_IDS_FILE
from prerank_contract.settings import configure_logging, load_settings
from research.bench.discovery import BenchError, checked_bundle, newest_bundle, user_id_vocabulary
from research.bench.latency_passes import measure_latency
from research.bench.latency_report import BenchReport, MachineFacts, latency_table, write_report
from research.bench.scorer_efficiency import measure_scorer_efficiency
from research.bench.scoring_paths import time_scoring_paths
from research.bench.targets import ECHO, FIT, TWO_TOWER, serving
from research.bench.throughput import measure_throughput
from research.bench.verdicts import verdicts_of
from research.settings import REPO_ROOT, BenchSettings
from service.settings import ServiceSettings
from service.tuning import retain_freed_memory

log = logging.getLogger("research.bench")

MODULE = "research.bench"
QUICK: dict[str, Any] = {  # --quick: a short run that still goes through every step
    "bench_requests": 30,
    "bench_warmup": 5,
    "bench_rounds": 1,
    "bench_scoring_repeats": 5,
    "bench_scoring_warmup": 1,
    "bench_scorer_calls": 20,
    "bench_scorer_warmup_calls": 2,
    "bench_gemm_calls": 5,
    "bench_throughput_rates": (100.0, 200.0, 400.0, 800.0, 1_600.0),
    "bench_throughput_seconds": 1.0,
    "bench_throughput_warmup_seconds": 0.5,
}


def run_bench(settings: BenchSettings, command: str) -> BenchReport:
    """Every measurement of one `make bench`."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    bundles = {
        FIT: settings.bench_fit_bundle or newest_bundle(settings.bench_bundles_dir, FIT),
        TWO_TOWER: settings.bench_two_tower_bundle
        or newest_bundle(settings.bench_bundles_dir, TWO_TOWER),
    }
    manifests = {name: checked_bundle(path, name) for name, path in bundles.items()}
    catalogue = np.load(bundles[FIT] / ITEM_IDS_FILE, allow_pickle=False).astype(np.int64)
    users = user_id_vocabulary(manifests[FIT].feature_schema)
    if manifests[TWO_TOWER].item_count != catalogue.size:
        log.warning("the Two-Tower bundle's catalogue differs from FIT's: N known differs")
    log.info("bundles: %s", {name: str(path) for name, path in bundles.items()})
    rows = measure_latency(partial(serving, bundles, settings), catalogue, users, settings)
    log.info("in process: the scorer's efficiency, the naive per-pair path")
    efficiency = measure_scorer_efficiency(bundles[FIT], users, settings)
    scoring = time_scoring_paths(bundles[FIT], manifests[FIT], settings)
    throughputs = measure_throughput(bundles[FIT], catalogue, users, settings)
    return BenchReport(
        command=command,
        started=started_at.strftime("%Y-%m-%d %H:%M UTC"),
        load_at_start=load_at_start,
        seconds=time.perf_counter() - started,
        machine=MachineFacts.here(),
        settings=settings,
        versions={ECHO: "echo", **{name: m.version for name, m in manifests.items()}},
        catalogue=int(catalogue.size),
        rows=rows,
        efficiency=efficiency,
        scoring=scoring,
        throughputs=throughputs,
        verdicts=verdicts_of(rows, efficiency, throughputs, settings),
    )


def print_summary(report: BenchReport) -> None:
    print(latency_table(report.rows))
    if report.scoring is not None:
        s = report.scoring
        print(
            f"\nthe naive path, {s.candidates:,} candidates in process (information): full model "
            f"per pair {s.per_pair_ms:.3f} ms, decoupled {s.decoupled_ms:.3f} ms "
            f"({s.speedup:.1f} x)"
        )
    for throughput in report.throughputs:
        if throughput.steps:
            best = throughput.best
            held = "none" if best is None else f"{best.rate:g}/s"
            print(
                f"open loop {throughput.target} x{throughput.workers} over {throughput.wire}: "
                f"highest rate held {held}"
            )
    print("\nverdicts:")
    for verdict in report.verdicts:
        print(f"  {verdict.line()}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Echo floor vs FIT vs Two-Tower through /prerank in every wire format, the "
        "scorer against its FLOPs, the naive per-pair path, 2-worker throughput of FIT and the "
        "floor; writes docs/benchmarks/latency.md and latency.png. "
        "PRERANK_BENCH_* settings (research/settings.py) set the rest.",
    )
    parser.add_argument("--quick", action="store_true", help="a short run through every step")
    parser.add_argument("--requests", type=int, help="timed requests per target, N and round")
    parser.add_argument("--rounds", type=int, help="rounds over every (N, target)")
    parser.add_argument("--candidates", type=int, nargs="+", help="candidate counts N")
    parser.add_argument("--fit-bundle", type=Path, help="FIT bundle directory")
    parser.add_argument("--two-tower-bundle", type=Path, help="Two-Tower bundle directory")
    parser.add_argument("--report-dir", type=Path, help="where latency.md and .png go")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    """Settings the flags set (over PRERANK_BENCH_*)."""
    overrides: dict[str, Any] = dict(QUICK) if args.quick else {}
    flags = {
        "bench_requests": args.requests,
        "bench_rounds": args.rounds,
        "bench_candidates": tuple(args.candidates) if args.candidates else None,
        "bench_fit_bundle": args.fit_bundle,
        "bench_two_tower_bundle": args.two_tower_bundle,
        "bench_report_dir": args.report_dir,
        "bench_progress": False if args.no_progress else None,
    }
    return overrides | {name: value for name, value in flags.items() if value is not None}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(BenchSettings, **overrides_of(args))
    configure_logging(logging.INFO)
    executable = os.path.relpath(sys.executable, REPO_ROOT)
    flags = sys.argv[1:] if argv is None else list(argv)
    command = " ".join([executable, "-m", MODULE, *flags])
    # This process holds torch's and the app's objects: a full collection of them stalls the
    # client for tens of ms, which would be timed as the server's. Frozen, collections skip them.
    gc.collect()
    gc.freeze()
    # The client reads every answer into fresh buffers: as in the servers (`tune_process`), that
    # memory is kept for the next answer rather than page-faulted in anew each time.
    retain_freed_memory(ServiceSettings().malloc_retain_bytes)
    try:
        report = run_bench(settings, command)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    markdown, image = write_report(report, settings.bench_report_dir)
    print_summary(report)
    print(f"\nwrote {markdown} and {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
