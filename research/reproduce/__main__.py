"""``python -m research.reproduce``: the paper's MovieLens tables (every model x seed, K sweep,
efficiency) and their reports under docs/results/."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from offline_jobs.settings import JobSettings
from prerank_contract.settings import configure_logging, load_settings
from prerank_model.models import MODELS
from research.reproduce.plan import DATASETS, ReproduceConfig
from research.reproduce.runner import reproduce


def parser() -> argparse.ArgumentParser:
    again = argparse.ArgumentParser(prog="python -m research.reproduce", description=__doc__)
    defaults = ReproduceConfig()
    again.add_argument("--datasets", nargs="+", default=defaults.datasets, choices=DATASETS)
    again.add_argument("--models", nargs="+", default=defaults.models, choices=sorted(MODELS))
    again.add_argument("--seeds", nargs="+", type=int, default=defaults.seeds)
    again.add_argument(
        "--leaky-seeds",
        nargs="*",
        type=int,
        default=defaults.leaky_seeds,
        help="seeds also run with the leaky mean-rating features (none: skip)",
    )
    again.add_argument(
        "--k", nargs="*", type=int, default=defaults.k_values, help="FIT's K sweep (none: skip)"
    )
    again.add_argument("--k-seeds", nargs="+", type=int, default=defaults.k_seeds)
    again.add_argument("--epochs", type=int, help="default: PRERANK_TRAIN__EPOCHS")
    again.add_argument("--max-ratings", type=int, help="read only the first N ratings (a slice)")
    again.add_argument(
        "--latency-candidates", nargs="+", type=int, default=defaults.latency_candidates
    )
    again.add_argument("--latency-requests", type=int, default=defaults.latency_requests)
    again.add_argument("--no-latency", action="store_true", help="skip the /prerank timing")
    again.add_argument("--results-dir", type=Path, default=defaults.results_dir)
    again.add_argument("--docs-dir", type=Path, default=defaults.docs_dir)
    again.add_argument("--quiet", action="store_true", help="no progress bars")
    return again


def reproduce_config(args: argparse.Namespace) -> ReproduceConfig:
    return ReproduceConfig(
        datasets=tuple(args.datasets),
        models=tuple(args.models),
        seeds=tuple(args.seeds),
        leaky_seeds=tuple(args.leaky_seeds),
        k_values=tuple(args.k),
        k_seeds=tuple(args.k_seeds),
        epochs=args.epochs,
        max_ratings=args.max_ratings,
        latency_candidates=tuple(args.latency_candidates),
        latency_requests=args.latency_requests,
        measure_latency=not args.no_latency,
        results_dir=args.results_dir,
        docs_dir=args.docs_dir,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(logging.INFO)
    settings = load_settings(JobSettings)
    try:
        reproduce(settings, reproduce_config(args), progress=not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
