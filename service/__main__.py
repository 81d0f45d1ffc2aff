"""``python -m service``: serve /prerank with uvicorn, configured by PRERANK_* settings."""

from __future__ import annotations

import logging
import sys

import uvicorn

from prerank_contract.settings import load_settings
from service.app import create_app
from service.settings import ServiceSettings


def main() -> int:
    settings = load_settings(ServiceSettings)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
