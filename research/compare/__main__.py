"""``python -m research.compare SPEC``: the six models and FIT's ablations trained on a dataset
spec for a list of seeds, timed through the real service, and the one to serve recommended:
docs/results/compare-<name>.md, .json and -pareto.png."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from offline_jobs.settings import JobSettings
from prerank_contract.settings import configure_logging, load_settings
from prerank_model.models import MODELS
from research.compare.plan import CompareConfig
from research.compare.runner import compare


def parser() -> argparse.ArgumentParser:
    compared = argparse.ArgumentParser(prog="python -m research.compare", description=__doc__)
    defaults = CompareConfig(spec=Path("spec.yaml"))
    compared.add_argument("spec", type=Path, help="the dataset spec (.yaml)")
    compared.add_argument("--models", nargs="+", default=defaults.models, choices=sorted(MODELS))
    compared.add_argument("--seeds", nargs="+", type=int, default=defaults.seeds)
    compared.add_argument("--epochs", type=int, help="default: PRERANK_TRAIN__EPOCHS")
    compared.add_argument(
        "--latency-candidates", nargs="+", type=int, default=defaults.latency_candidates
    )
    compared.add_argument("--latency-requests", type=int, default=defaults.latency_requests)
    compared.add_argument("--timing-rounds", type=int, default=defaults.timing_rounds)
    compared.add_argument("--timing-steps", type=int, default=defaults.timing_steps)
    compared.add_argument("--no-latency", action="store_true", help="skip the /prerank timing")
    compared.add_argument(
        "--latency-budget-ms", type=float, help="never recommend a model slower than this (p50)"
    )
    compared.add_argument("--auc-tolerance", type=float, default=defaults.auc_tolerance)
    compared.add_argument("--results-dir", type=Path, default=defaults.results_dir)
    compared.add_argument("--docs-dir", type=Path, default=defaults.docs_dir)
    compared.add_argument("--quiet", action="store_true", help="no progress bars")
    return compared


def compare_config(args: argparse.Namespace) -> CompareConfig:
    return CompareConfig(
        spec=args.spec,
        models=tuple(args.models),
        seeds=tuple(args.seeds),
        epochs=args.epochs,
        latency_candidates=tuple(args.latency_candidates),
        latency_requests=args.latency_requests,
        timing_rounds=args.timing_rounds,
        timing_steps=args.timing_steps,
        measure_latency=not args.no_latency,
        latency_budget_ms=args.latency_budget_ms,
        auc_tolerance=args.auc_tolerance,
        results_dir=args.results_dir,
        docs_dir=args.docs_dir,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(logging.INFO)
    settings = load_settings(JobSettings)
    try:
        report = compare(settings, compare_config(args), progress=not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
