"""Server settings sections: model lifecycle, response cache, API keys and limits.

Each section is a nested mapping in the YAML `server:` block and can also be set from the
environment with `__` between levels, e.g. `MODELSERVE_CACHE__URL=redis://redis:6379/0`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelserve.model_store import models_dir

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LifecycleSettings(Section):
    """When models load and unload (Ollama's keep_alive, plus a memory budget)."""

    max_loaded_models: int | None = Field(None, ge=1, description="None: no cap")
    memory_budget_mb: int | None = Field(None, ge=1, description="None: no budget")
    keep_alive_seconds: float | None = Field(
        None, description="unload a model idle this long; None or < 0: never")
    lazy_load: bool = Field(True, description="load an unloaded model on its first request")
    load_wait_seconds: float = Field(
        30.0, ge=0, description="a request for a loading model waits this long, then 503")
    unload_grace_seconds: float = Field(
        30.0, ge=0, description="requests in flight get this long to finish on unload")
    model_roots: list[str] = Field(
        default_factory=lambda: [str(models_dir())],
        description="directories admin-loaded model files may come from (default: the "
        "store `modelserve pull` fills, $MODEL_CACHE/models)")
    isolation: Literal["process", "inline"] = Field(
        "process", description="process: each model runs in a worker process of its own, so "
        "a crash ends only that model; inline: in the server process (debugging)")
    restart_backoff_seconds: float = Field(
        1.0, gt=0, description="first wait before restarting a crashed worker; doubles per "
        "failure in a row (a crash, or a restart that failed)")
    restart_backoff_max_seconds: float = Field(
        60.0, gt=0, description="the longest wait between restarts of a crashing worker")
    restart_max_attempts: int | None = Field(
        None, ge=1, description="failed restarts in a row before the model is left failed; "
        "None: keep trying (as Kubernetes and systemd do), the backoff capped")
    liveness_timeout_seconds: float = Field(
        10.0, gt=0, description="a serving worker that sends no heartbeat this long (frozen, "
        "swapping, stopped) is killed and restarted; its requests get 503")
    load_liveness_timeout_seconds: float = Field(
        120.0, gt=0, description="the same while the worker loads its model")


class CpuSettings(Section):
    """How the server's cores are divided between its model workers (cpu_plan.py)."""

    policy: Literal["shared", "partitioned"] = Field(
        "shared", description="shared: every worker may use every core, models without a "
        "`threads` option run one thread per core the server has in effect (affinity and "
        "cgroup quota); partitioned: workers pinned to shares of the cores (chat weighs "
        "more), `api_reserve_cores` kept for the API process; shared on 2 cores or fewer")
    cores: int | None = Field(None, ge=1, description="cores in effect; None: detected "
                              "from the affinity and the cgroup CPU quota")
    api_reserve_cores: int = Field(1, ge=0, description="partitioned: cores no worker "
                                   "runs on, left to the API process")
    weights: dict[str, float] = Field(
        default_factory=dict, description="each kind's share of the cores, by kind name "
        "(e.g. {chat: 3, embeddings: 1}): how models busy at once split them under `shared`, "
        "and the shares under `partitioned`; unset kinds keep their own (chat 2, others 1)")

    nice: dict[str, int] = Field(
        default_factory=dict, description="added to the nice value of each kind's workers "
        "(0-19, e.g. {embeddings: 5}): when cores are short, the others' threads run first "
        "(a raise only: an unprivileged process cannot lower it again); unset kinds keep "
        "their own (embeddings 10, others 0)")

    @field_validator("weights", "nice")
    @classmethod
    def _known_kinds(cls, value: dict[str, float]) -> dict[str, float]:
        from modelserve.kinds import KINDS

        for kind in value:
            if kind not in KINDS:
                raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")
        return value

    @field_validator("weights")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for kind, weight in value.items():
            if weight <= 0:
                raise ValueError(f"the weight of {kind!r} must be more than 0")
        return value

    @field_validator("nice")
    @classmethod
    def _nice_range(cls, value: dict[str, int]) -> dict[str, int]:
        for kind, nice in value.items():
            if not 0 <= nice <= 19:
                raise ValueError(f"the nice value of {kind!r} must be within 0-19")
        return value


class CacheSettings(Section):
    """The response cache for deterministic requests."""

    enabled: bool = False
    url: str = Field("memory://", description="memory:// or redis://host:port/db")
    ttl_seconds: float = Field(600.0, gt=0)
    max_entries: int = Field(1024, ge=1, description="memory backend")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="memory backend, in total")
    max_entry_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="larger is not cached")
    per_key: bool = Field(False, description="scope entries to the API key that made them")

    @model_validator(mode="after")
    def _known_scheme(self) -> CacheSettings:
        if not self.url.startswith(("memory://", "redis://", "rediss://", "unix://")):
            raise ValueError("cache.url must be memory:// or redis://...")
        return self


class ResponsesSettings(Section):
    """Stored responses of `/v1/responses` (`store: true`, the default), which
    `previous_response_id` and `GET /v1/responses/{id}` read. In memory, bounded; in Redis
    (the same TTL) when the response cache is enabled on a Redis URL, so replicas share them."""

    ttl_seconds: float = Field(3600.0, gt=0, description="a stored response expires after")
    max_stored: int = Field(1000, ge=1, description="memory: the most kept (LRU)")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="memory: in total; one "
                           "response larger than this is not stored")


class RateLimits(Section):
    """Per-key limits; None means unlimited."""

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    concurrent_requests: int | None = Field(None, ge=1)


class ApiKey(Section):
    """One API key, given in plain (`key`) or as the hex SHA-256 of it (`sha256`)."""

    key: str | None = Field(None, min_length=8)
    sha256: str | None = None
    name: str | None = Field(None, max_length=64, description="shown in logs instead of a hash")
    scope: Literal["user", "admin"] = "user"
    limits: RateLimits | None = Field(None, description="default: rate_limits.default")
    model_limits: dict[str, RateLimits] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_form(self) -> ApiKey:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of `key` or `sha256`")
        if self.sha256 is not None:
            self.sha256 = self.sha256.lower()
            if not _SHA256.match(self.sha256):
                raise ValueError("sha256 must be 64 hex digits")
        return self


class RateLimitSettings(Section):
    storage: str = Field("memory://", description="memory:// or redis://... (shared)")
    default: RateLimits = Field(default_factory=RateLimits)
    models: dict[str, RateLimits] = Field(
        default_factory=dict, description="per-model defaults, over `default`")
    on_storage_error: Literal["fail_open", "fail_closed"] = Field(
        "fail_open",
        description="when the storage (Redis) fails: serve without limits (counted in "
                    "/metrics), or refuse with 503 service_unavailable")


class InputLimits(Section):
    """Caps on what one request may ask for; over a cap is a 400 naming it.
    (Image caps live with the rest of image handling, in the `images:` section.)"""

    max_messages: int = Field(512, ge=1)
    max_message_chars: int = Field(200_000, ge=1)
    # 128 is OpenAI's own ceiling on `n`; past it a request is no client's intent.
    max_n: int = Field(16, ge=1, le=128, description="choices (`n`) per chat/completions "
                       "request")
    max_tokens: int | None = Field(None, ge=1, description="None: the model's context")
    max_embedding_inputs: int = Field(2048, ge=1)
    request_timeout_seconds: float = Field(600.0, gt=0, description="wall time per request")
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="time to receive a request's whole body, then 408")


class SecuritySettings(Section):
    api_keys: list[ApiKey] = Field(default_factory=list)
    api_keys_file: str | None = Field(
        None, description="YAML list of keys (a mounted secret); merged with api_keys")
    metrics_scope: Literal["public", "user", "admin"] = "admin"
    allow_open_network: bool = Field(
        False, description="with no keys, allow binding beyond loopback anyway")
    cors_origins: list[str] = Field(default_factory=list)


class ShutdownSettings(Section):
    """What SIGTERM does: stop taking work, let work in flight finish, then exit."""

    drain_timeout_seconds: float = Field(
        30.0, ge=0,
        description="requests in flight get this long to finish after SIGTERM; what still "
                    "runs then is ended cleanly (fits the Helm chart's 45 s grace period)")
