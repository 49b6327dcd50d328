"""Structured logs: one JSON object per line. Prompts and secrets are not logged: the code never
passes them, and fields named like them are dropped unless HALLMARK_LOG_PROMPTS is set."""

from __future__ import annotations

import datetime as dt
import json
import logging

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_PRIVATE = ("prompt", "secret", "key", "authorization", "password", "token")


class JsonFormatter(logging.Formatter):
    def __init__(self, log_prompts: bool = False) -> None:
        super().__init__()
        self.log_prompts = log_prompts

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name in _STANDARD or name.startswith("_"):
                continue
            if any(word in name.lower() for word in _PRIVATE) and not (self.log_prompts and name == "prompt"):
                continue
            entry[name] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str = "INFO", log_prompts: bool = False) -> dict:
    """Root logging as JSON lines on stderr; returns a uvicorn log config that does the same."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(log_prompts))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "log_prompts": log_prompts}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {
            name: {"handlers": ["default"], "level": level, "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
