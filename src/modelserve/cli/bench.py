"""`modelserve bench chat | embeddings | mixed | cache | images | audio`: load generators."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelserve.loadgen.surfaces import SURFACES


def _runner(module: str, function: str) -> Callable[[argparse.Namespace], None]:
    """A bench's entry point, imported only when it runs (the load generators pull in
    aiohttp, numpy, torch: `modelserve --help` stays quick)."""
    def run(args: argparse.Namespace) -> None:
        getattr(importlib.import_module(f"modelserve.loadgen.{module}"), function)(args)

    return run


def _client_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client", choices=["httpx", "aiohttp"], default="httpx",
                        help="the HTTP stack of the load generator")


def _clients(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


def register(sub: Any) -> None:
    bench = sub.add_parser("bench", help="benchmark an OpenAI-compatible server")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    cache = bench_sub.add_parser("cache", help="deterministic chat: cache miss vs hit latency")
    cache.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    cache.add_argument("--model", required=True)
    cache.add_argument("--requests", type=int, default=20, help="distinct prompts, each twice")
    cache.add_argument("--max-tokens", type=int, default=64)
    cache.add_argument("--api-key", default=None)
    cache.set_defaults(func=_runner("cache", "run_cache_bench"))
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
    _client_option(chat)
    chat.add_argument("--api-key", default=None)
    chat.set_defaults(func=_runner("chat_workloads", "run_chat_bench"))

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
    emb.add_argument("--client", choices=["aiohttp", "httpx", "httpx-shared"],
                     default="aiohttp", help="aiohttp or httpx, a connection per client; "
                     "httpx-shared: one httpx pool for all clients")
    emb.add_argument("--json-out", type=Path)
    emb.set_defaults(func=_runner("embeddings", "run_embeddings_bench"))

    mixed = bench_sub.add_parser(
        "mixed", help="chat streams and embeddings clients at once: each side's throughput "
        "and latency, alone and mixed")
    mixed.add_argument("--url", default="http://127.0.0.1:8000",
                       help="the server serving both models")
    mixed.add_argument("--chat-url", default=None, help="the chat server instead of --url")
    mixed.add_argument("--embeddings-url", default=None,
                       help="the embeddings server instead of --url")
    mixed.add_argument("--embeddings-path", default="/v1/embeddings",
                       help="endpoint path on the embeddings server")
    mixed.add_argument("--chat-model", required=True)
    mixed.add_argument("--embeddings-model", required=True)
    mixed.add_argument("--chat-streams", type=int, default=8,
                       help="streaming chat requests at all times")
    mixed.add_argument("--embedding-clients", type=int, default=32,
                       help="clients each sending one single-input request after another")
    mixed.add_argument("--max-tokens", type=int, default=128,
                       help="every answer's length (sent with ignore_eos)")
    mixed.add_argument("--words", type=int, default=8, help="words of each embeddings input")
    mixed.add_argument("--seconds", type=float, default=30.0, help="measured window per phase")
    mixed.add_argument("--warmup", type=float, default=3.0,
                       help="seconds of load before each window, not counted")
    mixed.add_argument("--alone", action="store_true",
                       help="first run chat alone and embeddings alone, same durations")
    _client_option(mixed)
    mixed.add_argument("--label", default=None, help="name for this server in the table")
    mixed.add_argument("--json-out", type=Path, help="append results as JSON lines here")
    mixed.add_argument("--api-key", default=None)
    mixed.set_defaults(func=_runner("mixed", "run_mixed_bench"))

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
    img.set_defaults(func=_runner("images", "run_images_bench"))

    audio = bench_sub.add_parser("audio", help="transcription RTF vs in-process faster-whisper, "
                                 "speech first byte, rerank documents/s")
    audio.add_argument("--audio-seconds", type=float, default=30.0)
    audio.add_argument("--beam-size", type=int, default=5)
    audio.add_argument("--rounds", type=int, default=5)
    audio.add_argument("--clients", type=_clients, default=[1, 16], help="e.g. 1,16")
    audio.add_argument("--rerank-seconds", type=float, default=10.0)
    audio.add_argument("--json-out", type=Path)
    audio.set_defaults(func=_runner("audio", "run_audio_bench"))
