"""Running the server: uvicorn with graceful shutdown that finishes acknowledged work."""

from __future__ import annotations

import gc
import logging
import signal

import orjson
import uvicorn

from rapport.api.app import create_app
from rapport.core import Rapport


class JsonFormatter(logging.Formatter):
    """Structured logs: one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record), "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler()
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(JsonFormatter() if as_json else plain)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def serve(rapport: Rapport, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; then stop accepting, finish in-flight requests, drain the writer."""
    configure_logging(rapport.settings.log_level, rapport.settings.log_json)
    app = create_app(rapport)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=30, loop="auto")
    server = uvicorn.Server(config)
    # Everything allocated so far (modules, the app, caches) lives as long as the process: keep it
    # out of the cyclic collector's full passes, which otherwise rescan it every few hundred
    # requests and stall ingestion for tens of milliseconds each time.
    gc.collect()
    gc.freeze()

    def after_shutdown(_sig: int, _frame: object) -> None:
        # uvicorn handles SIGTERM itself, then re-raises it once shut down; by then the work is done,
        # so the process goes on to close the writer and exits 0 instead of dying by the signal.
        if not server.should_exit:
            raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, after_shutdown)
    try:
        server.run()
    finally:
        rapport.close()
        signal.signal(signal.SIGTERM, previous)
