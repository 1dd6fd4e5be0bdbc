"""Mapillary client settings: endpoints, token, rate limits, concurrency, timeouts, retries."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from citysplat.mapillary.errors import MissingTokenError

GRAPH_URL = "https://graph.mapillary.com"
TILES_URL = "https://tiles.mapillary.com/maps/vtp"
ENV_GRAPH_URL = "CITYSPLAT_GRAPH_URL"
ENV_TILES_URL = "CITYSPLAT_TILES_URL"
ENV_TOKEN = "MAPILLARY_ACCESS_TOKEN"


class RateLimit(BaseModel):
    """At most ``max_rate`` requests per ``period_s`` seconds (a leaky bucket of that capacity)."""

    model_config = ConfigDict(frozen=True)

    max_rate: float = Field(gt=0)
    period_s: float = Field(gt=0)

    @classmethod
    def per_second(cls, rate: float) -> RateLimit:
        """``rate`` requests a second with no burst (a bucket of one)."""
        return cls(max_rate=1, period_s=1 / rate)

    @property
    def per_s(self) -> float:
        return self.max_rate / self.period_s


class MapillaryConfig(BaseModel):
    """Everything the client needs. The token is a :class:`SecretStr`: repr/str never show it.

    Rate limit defaults are Mapillary's published numbers (entity 60000/min, search 10000/min,
    tiles 50000/day); sources disagree, so they are settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: SecretStr = Field(repr=False)
    graph_url: str = GRAPH_URL
    tiles_url: str = TILES_URL
    entity_rate: RateLimit = RateLimit(max_rate=60_000, period_s=60)
    search_rate: RateLimit = RateLimit(max_rate=10_000, period_s=60)
    tiles_rate: RateLimit = RateLimit(max_rate=50_000, period_s=86_400)
    concurrency: int = Field(16, ge=1, description="Graph and tile requests in flight at once")
    connect_timeout_s: float = Field(10.0, gt=0)
    timeout_s: float = Field(60.0, gt=0, description="deadline of one request, body included")
    max_attempts: int = Field(6, ge=1, description="tries per request (the retry budget)")
    backoff_initial_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    max_retry_after_s: float = Field(300.0, ge=0, description="cap on a honoured Retry-After")
    announce_wait_s: float = Field(5.0, ge=0, description="log a warning for longer waits")
    max_json_bytes: int = Field(16 * 2**20, ge=1024, description="cap on a Graph API body")
    max_tile_bytes: int = Field(16 * 2**20, ge=1024, description="cap on a coverage tile")
    max_image_bytes: int = Field(64 * 2**20, ge=1024, description="cap on a thumbnail/original")
    user_agent: str = "citysplat/0.1 (+mapillary-client)"

    @field_validator("token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise MissingTokenError()
        return value

    @field_validator("graph_url", "tiles_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value

    @classmethod
    def from_env(cls, **overrides: Any) -> MapillaryConfig:
        """Settings from the environment (``MAPILLARY_ACCESS_TOKEN``, ``CITYSPLAT_GRAPH_URL``,
        ``CITYSPLAT_TILES_URL``), then ``overrides``. Raises :class:`MissingTokenError`."""
        values: dict[str, Any] = {}
        for field, env in (("graph_url", ENV_GRAPH_URL), ("tiles_url", ENV_TILES_URL)):
            if os.environ.get(env):
                values[field] = os.environ[env]
        token = os.environ.get(ENV_TOKEN, "")
        if token.strip():
            values["token"] = token.strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        token_value = values.get("token")
        if isinstance(token_value, SecretStr):
            token_value = token_value.get_secret_value()
        if not token_value or not str(token_value).strip():
            raise MissingTokenError()
        return cls(**values)

    def max_bytes(self, api: str) -> int:
        """The size cap of a response of ``api`` (entity, search, tiles or thumbs)."""
        if api == "tiles":
            return self.max_tile_bytes
        if api == "thumbs":
            return self.max_image_bytes
        return self.max_json_bytes

    def auth_header(self) -> dict[str, str]:
        """The token for Graph API requests: ``Authorization: OAuth <token>``."""
        return {"Authorization": f"OAuth {self.token.get_secret_value()}"}

    def token_param(self) -> dict[str, str]:
        """The token for coverage tiles, which accept it only as the ``access_token`` query
        parameter (a header-only tile request gets 403; ``docs/MAPILLARY_API.md``)."""
        return {"access_token": self.token.get_secret_value()}
