"""SIGTERM drains, against real server processes: long streams finish, new requests are
refused (never left hanging), the drain deadline ends what is left cleanly, a second signal
exits at once. Plus two connection-level faults: slow bodies, and a burst of 500 connections
opened and dropped at once."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SMOLLM2, ServerProcess, server_process
from tests.helpers import NO_EOS, assert_openai_error, samples, value

USER = [{"role": "user", "content": "Tell me a long story about a lighthouse."}]


def chat_config(context: int, parallel: int, **server: Any) -> dict[str, Any]:
    return {"server": server,
            "models": [{"name": "chat", "source": SMOLLM2,
                        # one thread: llama.cpp's thread barriers crawl on a busy 2-core box
                        "options": {"context_size": context, "parallel": parallel,
                                    "batch_size": 256, "threads": 1}}]}


@dataclass
class Stream:
    """One streamed chat completion read in a thread: its SSE events, as they come."""

    url: str
    max_tokens: int
    seed: int
    events: list[str] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        body = {"model": "chat", "messages": USER, "max_tokens": self.max_tokens,
                "temperature": 0.8, "seed": self.seed, "logit_bias": NO_EOS, "stream": True,
                "stream_options": {"include_usage": True}}
        try:
            with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=body,
                              timeout=120) as resp:
                assert resp.status_code == 200
                self.events += (line[len("data: "):] for line in resp.iter_lines()
                                if line.startswith("data: "))
        except BaseException as exc:  # the test reads it
            self.error = exc

    def wait_started(self, chunks: int = 3, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while len(self.events) < chunks:
            assert time.monotonic() < deadline and self.error is None, self.error
            time.sleep(0.02)

    def finish(self) -> list[dict[str, Any]]:
        """The events once the stream ended: it must end with `[DONE]`."""
        self.thread.join(timeout=120)
        assert not self.thread.is_alive() and self.error is None, self.error
        assert self.events[-1] == "[DONE]", self.events[-3:]
        return [json.loads(event) for event in self.events[:-1]]


def signal_and_time(server: ServerProcess, signum: int = signal.SIGTERM) -> float:
    server.proc.send_signal(signum)
    return time.monotonic()


def assert_refused_or_503(url: str) -> None:
    """A request after SIGTERM: a 503 with Retry-After, or no listener; never a hang."""
    try:
        resp = httpx.post(f"{url}/v1/chat/completions", timeout=10,
                          json={"model": "chat", "messages": USER, "max_tokens": 4})
    except httpx.ConnectError:
        return
    assert_openai_error(resp, 503, code="server_shutting_down")
    assert int(resp.headers["retry-after"]) >= 1


def test_sigterm_lets_four_long_streams_finish(tmp_path: Path) -> None:
    # A drain longer than the default: 4 x 300 tokens may take over 30 s on a busy 2-core
    # machine, and this test is about streams completing, not about the deadline.
    config = chat_config(512, 4, shutdown={"drain_timeout_seconds": 120})
    with server_process(tmp_path, config) as server:
        streams = [Stream(server.url, 300, seed) for seed in range(4)]
        for stream in streams:
            stream.wait_started()
        signal_and_time(server)
        ready = httpx.get(f"{server.url}/ready", timeout=5)
        assert ready.status_code == 503 and ready.json() == {"status": "draining"}
        assert_refused_or_503(server.url)
        for stream in streams:
            chunks = stream.finish()
            assert not any("error" in chunk for chunk in chunks), chunks[-2:]
            assert chunks[-1]["usage"]["completion_tokens"] == 300, chunks[-2:]
        assert server.proc.wait(timeout=30) == 0
        assert_refused_or_503(server.url)


def test_drain_deadline_ends_what_is_left_cleanly(tmp_path: Path) -> None:
    config = chat_config(2048, 2, shutdown={"drain_timeout_seconds": 1})
    with server_process(tmp_path, config) as server:
        stream = Stream(server.url, 2000, 1)
        answers: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{server.url}/v1/chat/completions", timeout=60,
            json={"model": "chat", "messages": USER, "max_tokens": 2000,
                  "logit_bias": NO_EOS})))
        waiting.start()
        stream.wait_started()
        signaled = signal_and_time(server)
        chunks = stream.finish()
        assert time.monotonic() - signaled < 5
        assert chunks[-1]["error"]["code"] == "server_shutting_down"
        waiting.join(timeout=30)
        assert_openai_error(answers[0], 503, code="server_shutting_down")
        assert server.proc.wait(timeout=15) == 0


def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    with server_process(tmp_path, chat_config(2048, 1)) as server:
        stream = Stream(server.url, 2000, 2)
        stream.wait_started()
        signal_and_time(server)
        time.sleep(0.3)
        second = signal_and_time(server, signal.SIGINT)
        server.proc.wait(timeout=10)
        assert time.monotonic() - second < 3
        assert stream.finish()[-1]["error"]["code"] == "server_shutting_down"


# -- connection-level faults, on one server -------------------------------------------------

BODY_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = chat_config(512, 4, limits={"body_timeout_seconds": BODY_TIMEOUT_S})
    with server_process(tmp_path_factory.mktemp("guarded"), config) as server:
        yield server


def slow_sender(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{")
    sock.setblocking(False)
    return sock


def trickle_until_answered(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """Send a byte every 0.2 s until the server answers and closes; (answer, time taken)."""
    started, answer = time.monotonic(), b""
    while time.monotonic() - started < seconds:
        try:
            data = sock.recv(65536)
            if not data:
                return answer, time.monotonic() - started  # closed by the server
            answer += data
        except BlockingIOError:
            pass
        with contextlib.suppress(OSError):  # the server may have closed: read what it said
            sock.send(b" ")
        time.sleep(0.2)
    raise AssertionError(f"the slow sender still connected after {seconds} s: {answer!r}")


def test_slow_body_senders_are_cut_at_the_body_timeout(guarded: ServerProcess) -> None:
    port = int(guarded.url.rsplit(":", 1)[1])
    senders = [slow_sender(port) for _ in range(20)]
    results: list[tuple[bytes, float]] = []
    threads = [threading.Thread(target=lambda s=s: results.append(trickle_until_answered(s, 10)))
               for s in senders]
    for thread in threads:
        thread.start()
    # others are served meanwhile
    ok = httpx.post(f"{guarded.url}/v1/chat/completions", timeout=30,
                    json={"model": "chat", "messages": USER, "max_tokens": 4})
    assert ok.status_code == 200
    for thread in threads:
        thread.join(timeout=15)
    for sock in senders:
        sock.close()
    assert len(results) == len(senders)
    for answer, seconds in results:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"code":"request_timeout"' in answer
        assert seconds < BODY_TIMEOUT_S + 2
    with httpx.Client(base_url=guarded.url, timeout=10) as http:
        assert value(samples(http, "/metrics"), "modelserve_http_requests_in_flight") == 1


def test_burst_of_500_connections_leaves_nothing_behind(guarded: ServerProcess) -> None:
    port = int(guarded.url.rsplit(":", 1)[1])
    chat = json.dumps({"model": "chat", "messages": USER, "max_tokens": 16}).encode()
    with httpx.Client(base_url=guarded.url, timeout=30) as http:
        assert http.get("/health").status_code == 200
        baseline = guarded.open_fds()
        sockets = []
        for i in range(500):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 3 == 1:  # half a request
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            elif i % 3 == 2:  # a whole request, which starts a generation
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\n"
                             b"Content-Length: " + str(len(chat)).encode() + b"\r\n\r\n" + chat)
            sockets.append(sock)
        for i, sock in enumerate(sockets):
            if i % 2:  # an abortive close (RST) for half of them
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            sock.close()
        deadline = time.monotonic() + 20
        while True:
            metrics = samples(http, "/metrics")
            settled = (guarded.open_fds() <= baseline + 2
                       and value(metrics, "modelserve_http_requests_in_flight") == 1
                       and value(metrics, "modelserve_running_sequences", model="chat") == 0
                       and value(metrics, "modelserve_waiting_sequences", model="chat") == 0)
            if settled:
                break
            assert time.monotonic() < deadline, (guarded.open_fds(), baseline)
            time.sleep(0.2)
        assert http.post("/v1/chat/completions", json={
            "model": "chat", "messages": USER, "max_tokens": 4}).status_code == 200
        assert value(metrics, "modelserve_requests_total", route="/v1/chat/completions",
                      model="chat", status="500") == 0
