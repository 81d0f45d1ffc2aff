"""``python -m service``: serve /prerank with uvicorn, configured by PRERANK_* settings; with
PRERANK_WORKERS > 1, several worker processes on one port (`service.workers`)."""

from __future__ import annotations

import sys

from prerank_contract.settings import configure_logging, load_settings
from service.settings import ServiceSettings
from service.workers import Supervisor, serve_one


def main() -> int:
    settings = load_settings(ServiceSettings)
    configure_logging(settings.log_level.upper())
    if settings.workers > 1:
        return Supervisor(settings).run()
    serve_one(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
