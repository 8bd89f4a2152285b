"""`modelserve serve | models | check-build | export-onnx`: run the server and inspect its setup."""

from __future__ import annotations

import argparse
import faulthandler
import ipaddress
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelserve.cli.model_flags import add_model_flags, model_specs
from modelserve.config import Settings, load_settings
from modelserve.sources import ConfigError


def _settings(args: argparse.Namespace) -> Settings:
    models = model_specs(args)
    try:
        return load_settings(args.config, extra_models=models,
                             host=getattr(args, "host", None), port=getattr(args, "port", None))
    except (ConfigError, ValidationError) as exc:
        sys.exit(f"modelserve: invalid configuration: {exc}")


def _serve(args: argparse.Namespace) -> None:
    from modelserve.api.app import create_app
    from modelserve.security import KeyRing
    from modelserve.server import run_server

    settings = _settings(args)
    _configure_logging(settings)
    # A fault in native code (llama.cpp, onnxruntime, torch) prints the Python stack of every
    # thread, so the log says which model and which step it was, not just "Segmentation fault".
    faulthandler.enable()
    try:
        keys = KeyRing.from_settings(settings)
    except ConfigError as exc:
        sys.exit(f"modelserve: invalid configuration: {exc}")
    host = settings.host
    if not keys.enabled and not _is_loopback(host) and not settings.security.allow_open_network:
        logging.getLogger("modelserve").warning(
            "no API keys are configured, so the server stays on loopback (127.0.0.1) instead "
            "of %s; configure keys, or set security.allow_open_network to expose it open", host)
        host = "127.0.0.1"
    run_server(create_app(settings.model_copy(update={"host": host})), settings, host)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_format == "json":
        # Request lines are JSON objects already: print them bare, one per line.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("modelserve.access")
        access.addHandler(handler)
        access.propagate = False


def _models(args: argparse.Namespace) -> None:
    settings = _settings(args)
    for spec in settings.models:
        try:
            where = str(spec.resolve_source())
        except ConfigError as exc:
            where = f"UNAVAILABLE ({exc})"
        print(json.dumps({"name": spec.name, "kind": spec.kind, "runtime": spec.runtime,
                          "source": where, "options": spec.options.model_dump()}))


def _check_build(args: argparse.Namespace) -> None:
    from modelserve.build_check import run

    run(args)


def _export(args: argparse.Namespace) -> None:
    from modelserve.export_onnx import export_onnx
    from modelserve.sources import PackageSource, PathSource

    src = args.src
    try:
        # PACKAGE:DIR names a directory inside an installed package, like a config source.
        source = (PackageSource(package=src.split(":", 1)[0], file=src.split(":", 1)[1])
                  if ":" in src and not Path(src).exists() else PathSource(path=src))
        directory = source.resolve()
    except ConfigError as exc:
        sys.exit(f"modelserve: {exc}")
    export_onnx(directory, args.dst, quantize=args.quantize)
    print(f"wrote {args.dst}")


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="start the OpenAI-compatible server")
    serve.add_argument("--config", type=Path,
                       help="models YAML (default: the bundled one, unless --model is given)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    add_model_flags(serve)
    serve.set_defaults(func=_serve)

    models = sub.add_parser("models", help="list the configured models, one JSON per line")
    models.add_argument("--config", type=Path)
    add_model_flags(models)
    models.set_defaults(func=_models)

    check = sub.add_parser("check-build", help="can this machine run the llama.cpp built here?")
    check.add_argument("--model", type=Path,
                       help="GGUF to decode one token of (default: the config's first)")
    check.add_argument("--config", type=Path)
    check.add_argument("--json", action="store_true", help="one JSON object instead of text")
    check.set_defaults(func=_check_build)

    export = sub.add_parser("export-onnx", help="sentence-transformers dir -> onnx runtime dir")
    export.add_argument("src", help="model directory, or PACKAGE:DIR inside an installed package")
    export.add_argument("dst", type=Path)
    export.add_argument("--quantize", choices=["int8", "int8-weights"], default=None)
    export.set_defaults(func=_export)
