"""The server process: uvicorn, with a drain between the first signal and uvicorn's shutdown.

uvicorn on SIGTERM closes its listener and gives requests in flight `timeout_graceful_shutdown`
seconds, then cancels them mid-response. Here the first SIGTERM (or SIGINT) starts the app's
`Drain` instead, with uvicorn still serving: new requests get a 503, those in flight run to
the drain deadline and are then ended cleanly. Once nothing is in flight, uvicorn's own
shutdown runs (listener closed, lifespan shutdown). A second signal ends the requests in
flight at once and skips the waiting, as uvicorn's second Ctrl+C does.
"""

from __future__ import annotations

import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

from modelserve.api.drain import Drain
from modelserve.config import Settings

# What uvicorn still waits for once the drain is over (every request has ended by then; this
# bounds connections that never became a request). Part of the budget that
# terminationGracePeriodSeconds must cover: preStop + drain + this + unloading the models.
AFTER_DRAIN_SECONDS = 5
STARTUP_FAILURE = 3  # uvicorn.run's exit status when the app could not start


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining:
            self.drain.cut_short()
            self.force_exit = True  # uvicorn then neither waits nor runs lifespan shutdown
        else:
            self.drain.request()

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        return self.drain.tick()


def run_server(app: FastAPI, settings: Settings, host: str) -> None:
    config = uvicorn.Config(app, host=host, port=settings.port, log_level=settings.log_level,
                            access_log=False, timeout_graceful_shutdown=AFTER_DRAIN_SECONDS)
    drain: Drain = app.state.drain
    server = DrainingServer(config, drain)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
