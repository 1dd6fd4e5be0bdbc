"""Typed errors of the Mapillary client. No message ever holds the access token."""

from __future__ import annotations


class MapillaryError(Exception):
    """Base class of everything the Mapillary client raises."""


class MissingTokenError(MapillaryError, ValueError):
    """No access token was configured."""

    def __init__(self) -> None:
        super().__init__(
            "No Mapillary access token: set the MAPILLARY_ACCESS_TOKEN environment variable "
            "(a client token from https://www.mapillary.com/dashboard/developers) "
            "or pass token= to MapillaryConfig.from_env()."
        )


class ApiError(MapillaryError):
    """The API answered with an error that retrying will not fix (e.g. 400 bad request, 404).

    ``status`` is the HTTP status, ``code`` the Graph API error code (None if the body had none),
    ``where`` the request path without query parameters."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        where: str = "",
        fbtrace_id: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.where = where
        self.fbtrace_id = fbtrace_id
        super().__init__(self._text())

    def _text(self) -> str:
        head = f"HTTP {self.status}" if self.status is not None else "request failed"
        if self.code is not None:
            head += f" (code {self.code})"
        where = f" on {self.where}" if self.where else ""
        return f"Mapillary {head}{where}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class AuthError(ApiError):
    """The token is missing, malformed, expired or revoked (401, code 190), or a tile request
    was refused (403: tiles take the token only as ``access_token=``); ``hint`` says which."""

    def __init__(self, message: str, *, hint: str | None = None, **kwargs: object) -> None:
        self.hint = hint
        super().__init__(message, **kwargs)  # type: ignore[arg-type]

    def _text(self) -> str:
        if self.hint:
            return f"{super()._text()} -- {self.hint}"
        return (
            super()._text() + " -- the access token was rejected; check MAPILLARY_ACCESS_TOKEN "
            "(a client token from https://www.mapillary.com/dashboard/developers)"
        )


class FieldRejectedError(ApiError):
    """400 code 100 "Tried accessing nonexisting field (X)": the API no longer knows field X
    (field names drift). The client drops it and asks again; ``field`` names it."""

    def __init__(self, message: str, *, field: str, **kwargs: object) -> None:
        self.field = field
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class NotFoundError(ApiError):
    """The object does not exist (or cannot be loaded with this token)."""


class TransientError(ApiError):
    """An error worth retrying: 429, 5xx, Query Timeout (code -2), network failures.

    Raised to the caller only when the retry budget is spent; ``attempts`` says how many were made."""

    attempts: int = 1

    def _text(self) -> str:
        text = super()._text()
        if self.attempts > 1:
            text += f" (gave up after {self.attempts} attempts)"
        return text

    def gave_up(self, attempts: int) -> TransientError:
        """Mark the error as final after ``attempts`` tries (updates the message)."""
        self.attempts = attempts
        self.args = (self._text(),)
        return self


class RateLimitError(TransientError):
    """429 / "Application request limit reached"; ``retry_after`` in seconds if the server said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class NetworkError(TransientError):
    """A timeout, connection reset or malformed response (e.g. a body cut short)."""


class ResponseTooLargeError(ApiError):
    """A body longer than the cap for its kind (a broken or hostile server): not retried."""

    def __init__(self, size: int, cap: int, **kwargs: object) -> None:
        self.size, self.cap = size, cap
        super().__init__(
            f"the response is larger than {cap:,} bytes (at least {size:,}): not what this "
            "endpoint answers, so it was not read further",
            **kwargs,  # type: ignore[arg-type]
        )


class UrlExpiredError(ApiError):
    """403 on a signed thumbnail URL: it expired (fetch a fresh one from the Graph API)."""
