"""`modelserve serve | models | check-build | export-onnx | bench`."""

from __future__ import annotations

import argparse
import faulthandler
import ipaddress
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from modelserve.config import Settings, load_settings
from modelserve.loadgen.surfaces import SURFACES
from modelserve.sources import ConfigError


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config, host=getattr(args, "host", None),
                             port=getattr(args, "port", None))
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


def _bench(args: argparse.Namespace) -> None:
    from modelserve.loadgen.chat_workloads import run_chat_bench

    run_chat_bench(args)


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


def _bench_embeddings(args: argparse.Namespace) -> None:
    from modelserve.loadgen.embeddings import run_embeddings_bench

    run_embeddings_bench(args)


def _bench_cache(args: argparse.Namespace) -> None:
    from modelserve.loadgen.cache import run_cache_bench

    run_cache_bench(args)


def _bench_images(args: argparse.Namespace) -> None:
    from modelserve.loadgen.images import run_images_bench

    run_images_bench(args)


def _bench_audio(args: argparse.Namespace) -> None:
    from modelserve.loadgen.audio import run_audio_bench

    run_audio_bench(args)


def _clients(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelserve")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the OpenAI-compatible server")
    serve.add_argument("--config", type=Path, help="models YAML (default: the bundled one)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.set_defaults(func=_serve)

    models = sub.add_parser("models", help="list the configured models, one JSON per line")
    models.add_argument("--config", type=Path)
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

    bench = sub.add_parser("bench", help="benchmark an OpenAI-compatible server")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    cache = bench_sub.add_parser("cache", help="deterministic chat: cache miss vs hit latency")
    cache.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    cache.add_argument("--model", required=True)
    cache.add_argument("--requests", type=int, default=20, help="distinct prompts, each twice")
    cache.add_argument("--max-tokens", type=int, default=64)
    cache.add_argument("--api-key", default=None)
    cache.set_defaults(func=_bench_cache)
    chat = bench_sub.add_parser("chat", help="streaming chat: TTFT, ITL, tok/s, errors")
    chat.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    chat.add_argument("--model", required=True)
    chat.add_argument("--concurrency", default=None,
                      help="comma-separated levels (default: 1,8,32; multiturn: 16 workers; "
                           "editing: 1,8)")
    chat.add_argument("--max-tokens", type=int, default=None,
                      help="per request (default 128; multiturn: 64 per turn; editing: 400)")
    chat.add_argument("--requests-per-client", type=int, default=2)
    chat.add_argument("--label", default=None, help="name for this server in the table")
    chat.add_argument("--json-out", type=Path, help="append results as JSON lines here")
    chat.add_argument("--workload", choices=["text", "json", "multiturn", "editing"],
                      default="text",
                      help="json: every request constrained by a JSON schema (structured "
                           "output); multiturn: conversations over one shared system prompt; "
                           "editing: rewrite a code block with one change")
    chat.add_argument("--ignore-eos", action="store_true",
                      help="ask for ignore_eos: every answer runs to --max-tokens")
    chat.add_argument("--users", type=int, default=64, help="multiturn: conversations")
    chat.add_argument("--turns", type=int, default=4, help="multiturn: turns of each")
    chat.add_argument("--system-words", type=int, default=750,
                      help="multiturn: words of the shared system prompt (750: ~1000 tokens)")
    chat.add_argument("--prediction", action="store_true",
                      help="editing: send the original code as a Predicted Output")
    chat.add_argument("--surface", choices=sorted(SURFACES), default="chat",
                      help="the API dialect to stream through (/v1/chat/completions, "
                           "/v1/responses, /v1/messages, /api/chat)")
    chat.add_argument("--client", choices=["httpx", "aiohttp"], default="httpx",
                      help="the HTTP stack of the load generator")
    chat.add_argument("--api-key", default=None)
    chat.set_defaults(func=_bench)

    emb = bench_sub.add_parser("embeddings", help="embeddings throughput and latency")
    emb.add_argument("--url", default="http://127.0.0.1:8000")
    emb.add_argument("--path", default="/v1/embeddings", help="endpoint path on the server")
    emb.add_argument("--model", required=True)
    emb.add_argument("--concurrency", default="1,16,64")
    emb.add_argument("--inputs", default="1,32", help="inputs per request")
    emb.add_argument("--words", default="8,200", help="text lengths in words")
    emb.add_argument("--total-inputs", type=int, default=512,
                     help="inputs per level (at least 2 requests per client)")
    emb.add_argument("--in-process", default=None,
                     help="also time SentenceTransformer.encode on this model directory")
    emb.add_argument("--threads", type=int, default=None)
    emb.add_argument("--label", default=None)
    emb.add_argument("--json-out", type=Path)
    emb.set_defaults(func=_bench_embeddings)

    img = bench_sub.add_parser("images", help="image latency: server vs in-process pipeline")
    img.add_argument("--model-dir", type=Path, default=None,
                     help="diffusers directory (default: build a tiny random-weight one)")
    img.add_argument("--tiny-width", type=int, default=8, help="channels of the tiny UNet")
    img.add_argument("--url", default=None,
                     help="a running server serving --model from --model-dir "
                          "(default: start one)")
    img.add_argument("--model", default="bench-sd")
    img.add_argument("--size", default="512x512")
    img.add_argument("--steps", type=int, default=20)
    img.add_argument("--rounds", type=int, default=5)
    img.add_argument("--threads", type=int, default=None)
    img.add_argument("--json-out", type=Path)
    img.add_argument("--isolation", choices=["process", "inline"], default="process",
                     help="the started server's lifecycle.isolation (its worker's cost)")
    img.set_defaults(func=_bench_images)

    audio = bench_sub.add_parser("audio", help="transcription RTF vs in-process faster-whisper, "
                                 "speech first byte, rerank documents/s")
    audio.add_argument("--audio-seconds", type=float, default=30.0)
    audio.add_argument("--beam-size", type=int, default=5)
    audio.add_argument("--rounds", type=int, default=5)
    audio.add_argument("--clients", type=_clients, default=[1, 16], help="e.g. 1,16")
    audio.add_argument("--rerank-seconds", type=float, default=10.0)
    audio.add_argument("--json-out", type=Path)
    audio.set_defaults(func=_bench_audio)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
