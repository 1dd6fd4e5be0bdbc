"""Keeping the access token out of text: messages, log records and URLs.

Coverage tiles take the token only as the ``access_token`` query parameter (see
``docs/MAPILLARY_API.md``), so it is now part of some URLs. Anything that may hold a URL (an
exception text, a library's log line) goes through :func:`redact` before a person or a file sees
it; :class:`RedactingFilter` does the same to log records of libraries that log URLs.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
_TOKEN_PARAM = re.compile(r"(access_token=)[^&\s\"'#<>]*", re.IGNORECASE)
_LIBRARY_LOGGERS = ("httpx", "httpcore", "aiohttp.client", "urllib3.connectionpool")


def token_forms(token: str) -> set[str]:
    """The token as it may appear in text: plain and percent-encoded (either case)."""
    if not token:
        return set()
    encoded = quote(token, safe="")
    return {token, encoded, quote_plus(token, safe=""), re.sub(
        r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded)}


def redact(text: str, token: str | None = None) -> str:
    """``text`` with every ``access_token=`` value and every form of ``token`` replaced."""
    for form in sorted(token_forms(token or ""), key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return _TOKEN_PARAM.sub(rf"\1{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """A log filter that rewrites each record's message through :func:`redact`."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__("citysplat-redaction")
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: leave it to logging's own error path
            return True
        cleaned = redact(message, self.token)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_library_logs() -> None:
    """Install one :class:`RedactingFilter` on the loggers of the HTTP libraries we use, which log
    request URLs (httpx at INFO, urllib3 at DEBUG). Idempotent."""
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
