"""CLI of the offline jobs: ``python -m offline_jobs COMMAND --help``.

run, publish (gated), versions, rollback, split (A/B), restore (what Redis lost), example (a
small shop's files and their dataset spec), convert (a built-in dataset's original files into the
tables its shipped spec reads). The paper's tables: ``python -m research.reproduce``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import orjson

from offline_jobs.data.adapters import CONVERTERS, convert
from offline_jobs.data.example import write_example
from offline_jobs.data.synthetic import generate_synthetic
from offline_jobs.release.commands import (
    publish_existing,
    require_redis,
    roll_back,
    split_traffic,
)
from offline_jobs.release.ledger import LedgerError
from offline_jobs.release.publish import PublishError
from offline_jobs.release.restore import restore_release
from offline_jobs.release.versions import LifecycleError, VersionInfo, list_versions
from offline_jobs.settings import JobSettings, check_dataset
from prerank_contract.bundle import BundleError
from prerank_contract.redis_client import REDIS_ERRORS
from prerank_contract.settings import configure_logging, load_settings
from prerank_contract.traffic import TrafficSplit


def share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: a share is a fraction in [0, 1]")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m offline_jobs",
        description="Offline jobs of the FIT pre-ranking service. Settings come from PRERANK_* "
        "environment variables (nested with __, e.g. PRERANK_TRAIN__EPOCHS=1).",
    )
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="data -> train -> evaluate -> export -> bundle -> publish"
    )
    run.add_argument("--retrain", action="store_true", help="ignore reusable bundles")
    run.add_argument("--no-publish", action="store_true", help="stop after writing bundles")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--dataset",
        metavar="NAME_OR_SPEC",
        help="a built-in dataset or a dataset spec (.yaml); overrides PRERANK_DATASET",
    )
    publish = commands.add_parser(
        "publish", help="gate an existing bundle directory and publish it to Redis"
    )
    publish.add_argument("bundle", type=Path, help="bundle directory (holds manifest.json)")
    publish.add_argument(
        "--no-activate",
        action="store_true",
        help="publish without moving the active pointer (e.g. for an A/B split)",
    )
    publish.add_argument(
        "--override",
        metavar="REASON",
        help="publish even if the gate refuses; the reason is recorded in the manifest",
    )
    versions = commands.add_parser("versions", help="list published versions and the active one")
    versions.add_argument("--json", action="store_true", help="one JSON document")
    back = commands.add_parser("rollback", help="re-activate the previously published version")
    back.add_argument("--to", metavar="VERSION", help="re-activate this published version")
    split = commands.add_parser("split", help="send a share of users to a second version")
    split.add_argument("version", nargs="?", help="the treatment version (published)")
    split.add_argument("--share", type=share, help="fraction of users, e.g. 0.1")
    split.add_argument("--salt", default="", help="hash key (default: the version id)")
    split.add_argument("--off", action="store_true", help="remove the split")
    restore = commands.add_parser(
        "restore",
        help="put back what Redis lost (versions, active pointer, A/B split, feature store) "
        "from the release ledger and the bundles on disk; leaves alone what is still there",
    )
    restore.add_argument(
        "--bundles",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also look for bundles in DIR/<version> (e.g. a service's bundle cache); repeatable",
    )
    restore.add_argument("--quiet", action="store_true", help="no progress bars")
    example = commands.add_parser(
        "example",
        help="write a small shop's files (string ids, raw values) and their dataset spec: "
        "a worked example of training on your own data",
    )
    example.add_argument("folder", type=Path, help="where the files and spec.yaml go")
    example.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    converting = commands.add_parser(
        "convert",
        help="rewrite a built-in dataset's original files (MovieLens, Amazon, Taobao) as the "
        "Parquet tables that its shipped spec (offline_jobs/data/specs/) reads",
    )
    converting.add_argument("format", choices=sorted(CONVERTERS))
    converting.add_argument("source", type=Path, help="the folder of the original files")
    converting.add_argument("out", type=Path, help="where interactions/users/items.parquet go")
    commands.add_parser(
        "events",
        help="apply user events from the Redis stream to the served feature stores (one "
        "consumer of a group; `python -m offline_jobs.events` starts the same without torch)",
    )
    return root


def version_row(info: VersionInfo) -> dict[str, object]:
    manifest = info.manifest
    status = "active" if info.active else ""
    if info.treatment_share is not None:
        status = f"treatment {100 * info.treatment_share:.1f}%"
    row: dict[str, object] = {"version": info.version, "status": status, "problem": info.problem}
    if manifest is not None:
        test = manifest.metrics.splits.get("test")
        row |= {
            "model": manifest.model_name,
            "created_at": manifest.created_at,
            "dataset": manifest.dataset.name,
            "test_auc": None if test is None else round(test.auc, 4),
            "test_logloss": None if test is None else round(test.logloss, 4),
            "parity": max(manifest.parity.values(), default=0.0),
            "gate": "-"
            if manifest.gate is None
            else f"override: {manifest.gate.override_reason}"
            if manifest.gate.override_reason
            else "passed",
        }
    return row


def print_versions(infos: list[VersionInfo], as_json: bool) -> None:
    rows = [version_row(info) for info in infos]
    if as_json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        print("no published versions")
        return
    columns: tuple[str, ...] = (
        "version",
        "status",
        "model",
        "dataset",
        "test_auc",
        "test_logloss",
        "gate",
    )
    if any(row["problem"] for row in rows):
        columns += ("problem",)
    table = [list(columns)] + [
        ["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def restore(settings: JobSettings, bundle_dirs: list[Path], *, progress: bool) -> int:
    """Exit status 0 when everything recorded is in Redis again, 1 when something is not."""
    client = require_redis(settings, "restore")
    report = restore_release(settings, client, bundle_dirs=bundle_dirs, progress=progress)
    for line in report.done:
        print(line)
    for problem in report.problems:
        print(f"not restored: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


def run_job(settings: JobSettings, args: argparse.Namespace) -> None:
    """The main job. Imported here, when run: it brings torch, which no other command needs."""
    from model_export.onnx_export import ParityError
    from offline_jobs.pipeline import run_pipeline

    try:
        run_pipeline(
            settings, retrain=args.retrain, publish=not args.no_publish, progress=not args.quiet
        )
    except ParityError as exc:
        raise BundleError(f"no bundle built: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "events":  # its own settings and log level; imported only when run
        from offline_jobs.events.__main__ import main as consume_events

        return consume_events([], prog="python -m offline_jobs events")
    configure_logging(logging.INFO)
    settings = load_settings(JobSettings)
    try:
        if args.command == "run":
            if args.dataset is not None:
                settings = settings.model_copy(update={"dataset": check_dataset(args.dataset)})
            run_job(settings, args)
        elif args.command == "publish":
            publish_existing(
                settings,
                args.bundle,
                activate=not args.no_activate,
                override_reason=args.override,
            )
        elif args.command == "versions":
            client = require_redis(settings, "list versions")
            print_versions(list_versions(client, settings.keys), args.json)
        elif args.command == "rollback":
            print(roll_back(settings, require_redis(settings, "roll back"), args.to))
        elif args.command == "restore":
            return restore(settings, args.bundles, progress=not args.quiet)
        elif args.command == "example":
            files = write_example(
                generate_synthetic(settings.synthetic, progress=False), args.folder, args.format
            )
            print(f"wrote {files.spec}; train: python -m offline_jobs run --dataset {files.spec}")
        elif args.command == "convert":
            for path in convert(args.format, args.source, args.out).values():
                print(f"wrote {path}")
        else:
            client = require_redis(settings, "set the A/B split")
            if not args.off and (args.version is None or args.share is None):
                raise ValueError("split needs VERSION and --share (or --off)")
            split = (
                None
                if args.off
                else TrafficSplit(version=args.version, share=args.share, salt=args.salt)
            )
            print(split_traffic(settings, client, split))
    except (
        FileNotFoundError,
        ValueError,
        BundleError,
        PublishError,
        LifecycleError,
        LedgerError,
        *REDIS_ERRORS,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
