"""CLI of the offline jobs: ``python -m offline_jobs {run,publish} --help``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import redis

from model_export.onnx_export import ParityError
from offline_jobs.pipeline import publish_existing, run_pipeline
from offline_jobs.publish import PublishError
from offline_jobs.settings import JobSettings
from prerank_contract.bundle import BundleError
from prerank_contract.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offline_jobs",
        description="Offline jobs of the FIT pre-ranking service. Settings come from PRERANK_* "
        "environment variables (nested with __, e.g. PRERANK_TRAIN__EPOCHS=1).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="data -> train -> evaluate -> export -> bundle -> publish"
    )
    run.add_argument("--retrain", action="store_true", help="ignore reusable bundles")
    run.add_argument("--no-publish", action="store_true", help="stop after writing bundles")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    publish = commands.add_parser("publish", help="publish an existing bundle directory to Redis")
    publish.add_argument("bundle", type=Path, help="bundle directory (holds manifest.json)")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(JobSettings)
    try:
        if args.command == "run":
            run_pipeline(
                settings, retrain=args.retrain, publish=not args.no_publish, progress=not args.quiet
            )
        else:
            publish_existing(settings, args.bundle)
    except (
        FileNotFoundError,
        ValueError,
        BundleError,
        ParityError,
        PublishError,
        redis.RedisError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
