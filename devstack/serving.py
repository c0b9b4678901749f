"""What the embedded servers share: serving an ASGI app on loopback and reading required settings."""

import logging
import os
import signal
import sys
import threading
from types import FrameType

import uvicorn
from starlette.applications import Starlette

logger = logging.getLogger(__name__)


def _log_signal(signum: int, frame: FrameType | None) -> None:
    logger.info("stopped by %s", signal.Signals(signum).name)


def run_app(app: Starlette, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn on ``host``:``port`` until SIGTERM/SIGINT, then return (status 0).

    uvicorn shuts down gracefully on these signals and then re-raises them with the handlers it found
    installed; logging handlers make that a normal return instead of a kill. No access log: URLs
    can carry query parameters with credentials.
    """
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _log_signal)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")


def required_env(name: str, program: str) -> str:
    """The value of environment variable ``name``; exit naming it when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"{program}: the environment variable {name} must be set")
    return value
