"""Configuration: the models YAML file plus server settings from `MODELSERVE_*` env vars."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from modelserve.config_sections import (
    CacheSettings,
    CpuSettings,
    InputLimits,
    LifecycleSettings,
    RateLimitSettings,
    ResponsesSettings,
    SecuritySettings,
    ShutdownSettings,
)
from modelserve.kinds import KINDS, kind_of_runtime, load_plugins
from modelserve.kinds.options import one_of
from modelserve.sources import ConfigError, PackageSource, PathSource

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


class ImageSettings(BaseModel):
    """Image inputs of vision models (server-wide): limits, and remote fetching (off)."""

    model_config = ConfigDict(extra="forbid")
    max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="encoded size of one image")
    max_pixels: int = Field(4096 * 4096, ge=1, description="width x height of one image")
    max_side: int = Field(8192, ge=1, description="longest side of one image")
    max_images: int = Field(16, ge=1, description="images in one request")
    allow_remote: bool = Field(False, description="fetch http(s) image URLs")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="hosts remote images may come from: exact names, '*.example.com', '*'")
    trusted_private_hosts: list[str] = Field(
        default_factory=list,
        description="allowed hosts that may resolve to private/loopback addresses")
    fetch_timeout_s: float = Field(10.0, gt=0, le=300, description="whole fetch, redirects too")
    max_redirects: int = Field(3, ge=0, le=10)


# A spec that names neither kind nor runtime is a chat model (the first kind there was).
DEFAULT_KIND = "chat"
OptionsT = TypeVar("OptionsT", bound=BaseModel)


class ModelSpec(BaseModel):
    """One model of the YAML `models:` list. Its kind (modelserve.kinds) names the runtimes
    that may serve it and the options model each runtime reads."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/-]+$")
    kind: str = DEFAULT_KIND
    runtime: str = "llama.cpp"  # always replaced: the kind's default runtime
    source: PackageSource | PathSource | str
    # Serialized as its real class: the field's type only says "some kind's options".
    options: SerializeAsAny[BaseModel] = Field(default_factory=BaseModel)
    pinned: bool = Field(False, description="never evicted or unloaded for idleness")
    preload: bool = Field(True, description="load at start-up (else on first request)")
    keep_alive_seconds: float | None = Field(
        None, description="idle time before unloading; default: lifecycle.keep_alive_seconds")

    @model_validator(mode="before")
    @classmethod
    def _options_for_runtime(cls, data: Any) -> Any:
        """Default the kind from the runtime and the runtime from the kind, then parse
        `options` with that runtime's model. Unknown names are left to the field checks."""
        if not isinstance(data, dict):
            return data
        # A kind that is no string (an admin load body may carry anything) is refused by the
        # field check below; here it must not reach the dict lookup (unhashable: a 500).
        named = data.get("kind") or DEFAULT_KIND
        named_kind = (KINDS.get(named) if isinstance(named, str) else None) \
            or KINDS[DEFAULT_KIND]
        runtime = data.get("runtime") or named_kind.default_runtime
        served_by = kind_of_runtime(runtime) if isinstance(runtime, str) else None
        kind = data.get("kind") or (served_by.name if served_by else DEFAULT_KIND)
        if served_by is not None and served_by.name != kind:
            raise ValueError(f"runtime {runtime!r} cannot serve kind {kind!r}")
        options = data.get("options") or {}
        if isinstance(options, dict) and served_by is not None:
            options = served_by.runtimes[runtime](**options)
        return {**data, "runtime": runtime, "kind": kind, "options": options}

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise PydanticCustomError("literal_error", "Input should be {expected}",
                                      {"expected": one_of(list(KINDS))})
        return value

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        runtimes = [name for kind in KINDS.values() for name in kind.runtimes]
        if value not in runtimes:
            raise PydanticCustomError("literal_error", "Input should be {expected}",
                                      {"expected": one_of(runtimes)})
        return value

    @field_validator("source")
    @classmethod
    def _string_is_path(cls, value: Any) -> Any:
        return PathSource(path=value) if isinstance(value, str) else value

    def options_as(self, options_class: type[OptionsT]) -> OptionsT:
        """The options, typed as the runtime that reads them expects."""
        if not isinstance(self.options, options_class):
            raise TypeError(f"model {self.name!r} has {type(self.options).__name__}, "
                            f"not {options_class.__name__}")
        return self.options

    def resolve_source(self) -> Path:
        source = self.source
        assert not isinstance(source, str)
        return source.resolve()


class Settings(BaseSettings):
    """Server settings. Env vars (`MODELSERVE_PORT=9000`) override the YAML `server:` section."""

    model_config = SettingsConfigDict(env_prefix="MODELSERVE_", env_nested_delimiter="__",
                                      extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    config: Path | None = Field(DEFAULT_CONFIG, description="None: models from the "
                                "command line only")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # multipart uploads (audio to transcribe, images to edit): OpenAI takes 25 MB files
    max_upload_bytes: int = Field(26 * 1024 * 1024, ge=1024)
    api_key: str | None = Field(None, min_length=8,
                                description="one admin key (MODELSERVE_API_KEY)")
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    limits: InputLimits = Field(default_factory=InputLimits)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    cpu: CpuSettings = Field(default_factory=CpuSettings)
    responses: ResponsesSettings = Field(default_factory=ResponsesSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    images: ImageSettings = Field(default_factory=lambda: ImageSettings.model_validate({}))
    models: list[ModelSpec] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


CONFIG_SECTIONS = ("models", "server")


def load_settings(config_path: Path | None = None, *,
                  extra_models: Sequence[ModelSpec] = (), **overrides: Any) -> Settings:
    """Read the YAML file (its `models:` and optional `server:` section), then apply env vars.

    `extra_models` (`serve --model`) join the file's models; when no file is named (neither
    `config_path` nor MODELSERVE_CONFIG) they are the only models, the bundled default
    config's are not read."""
    load_plugins()  # the models may be of kinds from outside the package
    named = config_path or os.environ.get("MODELSERVE_CONFIG")
    path = Path(named) if named else None if extra_models else DEFAULT_CONFIG
    raw = _read_config(path) if path is not None else {}
    server = raw.get("server") or {}
    settings = Settings(**{**server, "models": raw.get("models") or [], "config": path})
    # Command-line flags beat env vars, which beat the file.
    settings = settings.model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    _check_unique(settings.models, extra_models, path)
    if extra_models:
        settings = settings.model_copy(update={"models": [*settings.models, *extra_models]})
    return settings


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping")
    # A setting put at the top level would otherwise be ignored without a word.
    unknown = sorted(str(key) for key in raw if key not in CONFIG_SECTIONS)
    if unknown:
        raise ConfigError(f"config {path}: unknown top-level key(s) {', '.join(unknown)} "
                          "(a config has `models:` and `server:`; server settings go under "
                          "`server:`)")
    return raw


def _check_unique(file_models: Sequence[ModelSpec], extra_models: Sequence[ModelSpec],
                  path: Path | None) -> None:
    names = [m.name for m in file_models]
    if len(names) != len(set(names)):
        raise ConfigError("model names must be unique")
    for model in extra_models:
        if model.name in names:
            where = f"config {path}" if model.name in {m.name for m in file_models} else \
                "the models given"
            raise ConfigError(f"model name {model.name!r} is already taken in {where}; "
                              "give it another with --name")
        names.append(model.name)
