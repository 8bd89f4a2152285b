"""Ollama's `options` as the core's sampling, and `keep_alive` as seconds.

Every option is either honoured, accepted and ignored for a stated reason, or refused by
name (a 400): a client must not believe a setting took effect when it did not.
"""

from __future__ import annotations

import re
from typing import Any

from modelserve.api.errors import bad_request
from modelserve.chat.turn import Sampling

# Ollama's own sampling defaults (its docs' Modelfile parameters), so an Ollama client gets
# the answers it expects when it sends none. repeat_penalty stays off (1.0): Ollama's 1.1
# applies to a 64-token window (repeat_last_n), and this engine has no window, so 1.1 would
# penalise the whole context (JSON's quotes and braces included).
DEFAULTS: dict[str, Any] = {"temperature": 0.8, "top_k": 40, "top_p": 0.9}

_FLOATS: dict[str, tuple[float, float | None]] = {
    "temperature": (0.0, 2.0), "top_p": (0.0, 1.0), "min_p": (0.0, 1.0),
    "repeat_penalty": (0.0, None), "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0)}

# Load-time options: Ollama reloads a model to apply them; here a model's runtime settings
# come from the server's configuration (context_size, threads, batch_size, gpu_layers), so
# these are accepted and ignored, or every Ollama client sending them (Open WebUI sends
# num_ctx, LangChain num_thread, ...) would fail. A prompt longer than the configured
# context is still refused by name. num_keep and repeat_last_n only matter for context
# shifting and the repeat window, neither of which this engine does.
IGNORED = frozenset({"numa", "num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram",
                     "f16_kv", "logits_all", "vocab_only", "use_mmap", "use_mlock",
                     "embedding_only", "num_thread", "num_keep", "repeat_last_n"})

# Options this engine cannot honour, accepted only at the value that turns them off.
_OFF = {"mirostat": 0, "tfs_z": 1.0, "typical_p": 1.0, "penalize_newline": False}

SAMPLING = frozenset({*_FLOATS, "top_k", "seed", "stop", "num_predict"})


def _number(name: str, value: Any, low: float | None, high: float | None) -> float:
    where = f"options.{name}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{where} must be a number.", param=where)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low:g}" if high is None else f"between {low:g} and {high:g}"
        raise bad_request(f"{where} must be {bounds}.", param=where)
    return float(value)


def _integer(name: str, value: Any) -> int:
    where = f"options.{name}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{where} must be an integer.", param=where)
    return value


def check_known(options: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """The options that matter, None values dropped (clients send every key); an option not
    known, or not honoured at the value given, is a 400 naming it."""
    given = {k: v for k, v in options.items() if v is not None}
    for name, value in given.items():
        if name in allowed or name in IGNORED:
            continue
        if name in _OFF and value == _OFF[name]:
            continue
        reason = f"is not supported by this server (only {_OFF[name]!r}, off)" \
            if name in _OFF else "is not a known option"
        raise bad_request(f"options.{name} {reason}.", param=f"options.{name}")
    return {k: v for k, v in given.items() if k in allowed}


def sampling(options: dict[str, Any] | None) -> Sampling:
    given = {**DEFAULTS, **check_known(options or {}, SAMPLING)}
    floats = {name: _number(name, given[name], *_FLOATS[name])
              for name in _FLOATS if name in given}
    top_k = _integer("top_k", given["top_k"])
    if top_k < 0:
        raise bad_request("options.top_k must not be negative.", param="options.top_k")
    seed = _integer("seed", given["seed"]) if "seed" in given else None
    predict = _integer("num_predict", given["num_predict"]) if "num_predict" in given else -1
    # -1: no limit, -2: fill the context; both mean "up to the context" here.
    if predict == 0 or predict < -2:
        raise bad_request("options.num_predict must be positive, -1 (no limit) or -2 (fill "
                          "the context).", param="options.num_predict")
    stop = given.get("stop", [])
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise bad_request("options.stop must be a list of non-empty strings.",
                          param="options.stop")
    out = Sampling(max_tokens=predict if predict > 0 else None, top_k=top_k, seed=seed,
                   stop=tuple(stop))
    for name, number in floats.items():
        setattr(out, name, number)
    return out


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def keep_alive_seconds(value: float | str | None) -> float | None:
    """Seconds (negative: forever), from a number of seconds or a Go duration ("5m",
    "1h30m", "-1"); None when not given."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)  # a number as a string: seconds
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise bad_request(f"keep_alive {value!r} is not a duration (e.g. \"5m\", \"1h\", 300, "
                          "-1 for forever, 0 to unload at once).", param="keep_alive")
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)
