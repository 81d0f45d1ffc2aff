"""``python -m service``: serve /prerank with uvicorn, configured by PRERANK_* settings."""

from __future__ import annotations

import logging
import math
import sys

import uvicorn

from prerank_contract.settings import load_settings
from service.app import create_app
from service.server import DrainingServer
from service.settings import ServiceSettings


def main() -> int:
    settings = load_settings(ServiceSettings)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_seconds),
    )
    DrainingServer(config, app.state.prerank).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
