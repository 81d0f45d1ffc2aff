"""``python -m service``: serve /prerank with uvicorn, configured by PRERANK_* settings; with
PRERANK_WORKERS > 1, several worker processes on one port (`service.workers`).

``python -m service hash-key``: read an API key from stdin and print the sha256 digest that
PRERANK_API_KEY_HASHES holds for it (the key itself is never stored)."""

from __future__ import annotations

import argparse
import sys

from prerank_contract.settings import configure_logging, load_settings
from service.settings import ServiceSettings
from service.workers import Supervisor, serve_one


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m service",
        description="The pre-ranking service; settings come from PRERANK_* variables.",
    )
    commands = root.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve (the default)")
    commands.add_parser(
        "hash-key",
        help="read an API key from stdin, print its digest for PRERANK_API_KEY_HASHES",
    )
    return root


def hash_key() -> int:
    # Imported here, not above: service.auth loads prometheus_client (through the app state),
    # which must not be loaded before the supervisor of several workers sets its multiprocess
    # directory (`service.workers`), or the workers' metrics would not add up.
    from service.auth import key_digest, read_key

    try:
        key = read_key(sys.stdin.readline())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(key_digest(key))
    return 0


def serve() -> int:
    settings = load_settings(ServiceSettings)
    configure_logging(settings.log_level.upper())
    if settings.workers > 1:
        return Supervisor(settings).run()
    serve_one(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return hash_key() if args.command == "hash-key" else serve()


if __name__ == "__main__":
    sys.exit(main())
