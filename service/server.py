"""uvicorn with a drain on SIGTERM: readiness fails first, requests are still answered for
`shutdown_drain_seconds` (load balancers stop sending), then the listener closes, in-flight
requests finish (at most `shutdown_timeout_seconds`) and the process exits."""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import uvicorn

from service.state import ServiceState

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServiceState) -> None:
        super().__init__(config)
        self.state = state
        self.drain_until: float | None = None  # monotonic; set by the first SIGTERM

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First SIGTERM: start draining. A second signal, or SIGINT, stops at once as usual."""
        if sig == signal.SIGTERM and self.drain_until is None:
            drain = self.state.settings.shutdown_drain_seconds
            self.state.draining = True
            self.drain_until = time.monotonic() + drain
            log.info("SIGTERM: not ready; draining for %.1f s, then closing", drain)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            self.should_exit = True
        return await super().on_tick(counter)
