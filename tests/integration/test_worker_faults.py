"""The worker boundary under every fault, in seconds: the tiny kind (tests/fixtures/
tiny_kind.py) runs in a real worker process, so stopping, killing or overloading it is what
it would be for a real model. The same faults against real models: test_worker_boundary.py.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, serve
from tests.helpers import (
    admin_models,
    assert_ended_cleanly,
    assert_openai_error,
    kill_during_streams,
    sse_events,
    wait_state,
)

pytestmark = pytest.mark.usefixtures("tiny_kind")

FAST = {"liveness_timeout_seconds": 1.0, "restart_backoff_seconds": 0.1,
        "restart_backoff_max_seconds": 0.4}


def tiny(name: str, source: Path, **options: Any) -> dict[str, Any]:
    return {"name": name, "kind": "tiny", "source": str(source), "options": options}


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.bin"
    path.write_bytes(b"tiny")
    return path


@contextlib.contextmanager
def tiny_server(tmp_path: Path, models: list[dict[str, Any]], **server: Any
                ) -> Iterator[tuple[LiveServer, httpx.Client]]:
    lifecycle = {**FAST, "model_roots": [str(tmp_path)], **server.pop("lifecycle", {})}
    with serve(tmp_path, {"server": {"lifecycle": lifecycle, **server}, "models": models}) \
            as live, httpx.Client(base_url=live.url, timeout=60) as http:
        yield live, http


def call(url: str, model: str, method: str, *args: Any, **extra: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/tiny/call", json={"model": model, "method": method,
                                                   "args": list(args), **extra}, timeout=60)


def resume(pid: int) -> None:
    """SIGCONT, if the process still exists (the liveness check may have killed it)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def long_stream(url: str) -> tuple[threading.Thread, list[str]]:
    """A 10 s stream of model "a", read by a thread into the returned list."""
    events: list[str] = []
    stream = threading.Thread(target=sse_events, args=(
        url, "/v1/tiny/stream", {"model": "a", "method": "count", "args": [1000, 0.01]},
        events))
    stream.start()
    return stream, events


# A frozen event loop shows as seconds; a busy 2-core CI machine can take a scheduling slice
# or two (0.13 s was seen) to answer a healthy /health, so the bound is well above that.
STALL = 1.0


def quick_health(http: httpx.Client) -> float:
    started = time.monotonic()
    assert http.get("/health").status_code == 200
    return time.monotonic() - started


def test_a_stopped_worker_never_stalls_the_server_and_is_replaced(
        tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights), tiny("b", weights)],
                     max_request_bytes=2**21) as (live, http):
        pid = admin_models(http)["a"]["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(12) as pool:
                # 12 x 1 MB: far past what the pipe holds, so writing would block.
                sent = [pool.submit(call, live.url, "a", "size", "x" * 2**20, bytes=True)
                        for _ in range(12)]
                for _ in range(6):
                    assert quick_health(http) < STALL
                    assert call(live.url, "b", "echo", "still here").json() == \
                        {"result": "still here"}
                    time.sleep(0.1)
                answers = [f.result() for f in sent]
        finally:
            resume(pid)
        for answer in answers:
            err = assert_openai_error(answer, 503, code="model_unavailable")
            assert "stopped answering" in err["message"]
            assert int(answer.headers["retry-after"]) >= 1
        ready = wait_state(http, "a", "ready", timeout=30)
        assert ready["pid"] != pid and ready["restarts"] == 1
        assert call(live.url, "a", "echo", "back").json() == {"result": "back"}


def test_a_worker_stopped_shorter_than_the_timeout_finishes_everything(
        tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights)],
                     lifecycle={"liveness_timeout_seconds": 5.0}) as (live, http):
        pid = admin_models(http)["a"]["pid"]
        os.kill(pid, signal.SIGSTOP)
        with ThreadPoolExecutor(8) as pool:
            sent = [pool.submit(call, live.url, "a", "echo", i) for i in range(8)]
            time.sleep(1.0)
            assert quick_health(http) < STALL
            resume(pid)
            assert [f.result().json()["result"] for f in sent] == list(range(8))
        assert admin_models(http)["a"]["pid"] == pid


def test_a_full_queue_is_a_429_and_an_unresponsive_worker_a_503(
        tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelserve.worker.pipe.MAX_QUEUED_MESSAGES", 3)
    with tiny_server(tmp_path, [tiny("a", weights)], max_request_bytes=2**21,
                     lifecycle={"liveness_timeout_seconds": 4.0}) as (live, http):
        pid = admin_models(http)["a"]["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(6) as pool:
                # A message bigger than the pipe: the writer blocks on it, the queue fills.
                big = pool.submit(call, live.url, "a", "size", "x" * 2**20, bytes=True)
                time.sleep(0.3)
                small = [pool.submit(call, live.url, "a", "echo", i) for i in range(5)]
                time.sleep(0.3)  # heard from within a few heartbeats: only busy
                busy = call(live.url, "a", "echo", "more")
                time.sleep(2.0)  # silent past the responsive window: unresponsive
                stalled = call(live.url, "a", "echo", "more")
                resume(pid)  # back before the liveness timeout
                answers = [f.result() for f in [big, *small]]
        finally:
            resume(pid)
        assert_openai_error(busy, 429, code="queue_full")
        assert busy.headers["retry-after"] == "1"
        assert_openai_error(stalled, 503, code="model_unavailable")
        assert sorted(a.status_code for a in answers) == [200, 200, 200, 429, 429, 429]


def test_a_restart_that_fails_is_retried_until_the_model_is_back(
        tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights)],
                     lifecycle={"load_wait_seconds": 0.2}) as (live, http):
        hidden = weights.with_suffix(".away")
        weights.rename(hidden)
        os.kill(admin_models(http)["a"]["pid"], signal.SIGKILL)
        retrying = wait_state(http, "a", "restarting", timeout=30,
                              check=lambda m: m["restart_attempts"] >= 3
                              and m["next_restart_at"] is not None)
        assert "does not exist" in retrying["error"]
        for _ in range(5):  # between two tries (one in progress has no next try to tell)
            refused = call(live.url, "a", "echo", "now?")
            assert_openai_error(refused, 503, code="model_unavailable")
            if int(refused.headers["retry-after"]) <= 2:  # the backoff left, rounded up
                break
        else:
            raise AssertionError(f"Retry-After {refused.headers['retry-after']}")
        hidden.rename(weights)
        back = wait_state(http, "a", "ready", timeout=10)  # no admin action
        assert back["restarts"] >= 4 and back["restart_attempts"] == 0
        assert call(live.url, "a", "echo", "yes").json() == {"result": "yes"}


def test_a_request_waits_for_a_restart_up_to_its_deadline(tmp_path: Path,
                                                          weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights, load_seconds=0.5)],
                     lifecycle={"restart_backoff_seconds": 0.5}) as (live, http):
        os.kill(admin_models(http)["a"]["pid"], signal.SIGKILL)
        wait_state(http, "a", "restarting", timeout=10)
        started = time.monotonic()
        assert call(live.url, "a", "echo", "waited").json() == {"result": "waited"}
        assert time.monotonic() - started > 0.5  # held until the new worker was ready


def test_restarts_can_be_capped(tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights)],
                     lifecycle={"restart_max_attempts": 2}) as (_, http):
        weights.unlink()
        os.kill(admin_models(http)["a"]["pid"], signal.SIGKILL)
        failed = wait_state(http, "a", "failed", timeout=30)
        assert failed["error"].startswith("gave up after 2 failed restarts")


def test_kill_9_at_random_points_of_streams_always_ends_them_cleanly(
        tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights)]) as (_, http):
        ends = kill_during_streams(
            http, "a", "/v1/tiny/stream", {"model": "a", "method": "count", "args": [30, 0.005]},
            streams=3, rounds=8, latest=0.4, seed=7)
    assert "error" in ends


def test_a_thread_failing_in_the_worker_ends_it_and_its_streams(
        tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights)]) as (live, http):
        pid = admin_models(http)["a"]["pid"]
        stream, events = long_stream(live.url)
        time.sleep(0.3)
        call(live.url, "a", "fail_thread")
        stream.join(timeout=5)
        assert not stream.is_alive()
        assert assert_ended_cleanly(events) == "error"
        assert "injected failure" in json.loads(events[-2])["error"]["message"]
        ready = wait_state(http, "a", "ready", timeout=30)
        assert ready["pid"] != pid


def test_a_hung_call_times_out_alone(tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights)],
                     limits={"request_timeout_seconds": 1.0}) as (live, http):
        hung = call(live.url, "a", "hang")
        assert_openai_error(hung, 408, code="request_timeout")
        assert quick_health(http) < STALL
        assert call(live.url, "a", "nap", 0.01).json() == {"result": "rested"}
        unknown = call(live.url, "a", "no_such_method")  # refused at once, not a hang
        assert unknown.status_code == 500


def test_huge_messages_cross_both_ways_while_the_server_answers(
        tmp_path: Path, weights: Path) -> None:
    size = 48 * 2**20
    with tiny_server(tmp_path, [tiny("a", weights)], max_request_bytes=2 * size) \
            as (live, http), ThreadPoolExecutor(2) as pool:
        up = pool.submit(call, live.url, "a", "size", "x" * size, bytes=True)
        down = pool.submit(call, live.url, "a", "blob", size)
        slowest = max(quick_health(http) for _ in range(10))
        assert up.result().json() == {"result": size}
        assert down.result().json() == {"result": size}
        assert slowest < 2.0  # parsing the 48 MB JSON body itself takes the loop a while
        assert admin_models(http)["a"]["pipe_bytes_sent"] > size


def test_a_slow_consumer_holds_back_only_itself(tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights)]) as (live, _):
        body = {"model": "a", "method": "ticks", "args": [20000]}
        with httpx.stream("POST", f"{live.url}/v1/tiny/stream", json=body,
                          timeout=60) as slow:
            lines = slow.iter_lines()
            next(lines)  # then it stops reading for a while
            fast: list[str] = []
            sse_events(live.url, "/v1/tiny/stream",
                       {"model": "a", "method": "ticks", "args": [50]}, fast)
            assert assert_ended_cleanly(fast) == "done" and len(fast) == 51
            rest = [line for line in lines if line.startswith("data: ")]
        assert rest[-1] == "data: [DONE]" and len(rest) == 20000


def test_a_worker_killed_while_loading_fails_the_load(tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, []) as (_, http):
        started = http.post("/admin/models/load", json=tiny("slow", weights, load_seconds=30))
        assert started.status_code == 202
        worker = None
        while worker is None:
            worker = next((p for p in multiprocessing.active_children()
                           if p.name == "modelserve-worker-slow"), None)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        failed = wait_state(http, "slow", "failed", timeout=30)
        assert "died while loading: killed by SIGKILL" in failed["error"]


def test_a_load_over_the_budget_is_refused_by_its_estimate(tmp_path: Path,
                                                           weights: Path) -> None:
    pinned = {**tiny("a", weights, estimate_mb=100), "pinned": True}  # not evicted for room
    with tiny_server(tmp_path, [pinned], lifecycle={"memory_budget_mb": 150}) as (live, http):
        before = {p.pid for p in multiprocessing.active_children()}
        big = http.post("/admin/models/load", params={"wait": "true"},
                        json=tiny("b", weights, estimate_mb=100))
        assert "estimated 100 MiB" in assert_openai_error(big, 422)["message"]
        assert {p.pid for p in multiprocessing.active_children()} <= before
        # A reload runs beside the old version until ready: both count.
        reload = http.post("/admin/models/load", params={"wait": "true"},
                           json={**pinned, "options": {"estimate_mb": 60}})
        assert "a reload runs beside" in assert_openai_error(reload, 422)["message"]
        assert call(live.url, "a", "echo", "old one").status_code == 200


def test_workers_stop_in_parallel_at_shutdown(tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, [tiny(n, weights, close_seconds=1.5) for n in "abc"]):
        started = time.monotonic()
    assert time.monotonic() - started < 3.5  # one close time, not three


def test_a_crash_during_a_reload_loads_once(tmp_path: Path, weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights)]) as (_, http):
        old = admin_models(http)["a"]["pid"]
        reload = http.post("/admin/models/load", json=tiny("a", weights, load_seconds=1.0))
        assert reload.status_code == 202
        time.sleep(0.3)  # the new version loads beside the old one...
        os.kill(old, signal.SIGKILL)  # ...which dies: the restart must wait for the reload
        wait_state(http, "a", "ready", timeout=30, check=lambda m: m["pid"] != old)
        time.sleep(1.5)  # time enough for a second load to have started, were there one
        workers = [p.pid for p in multiprocessing.active_children()
                   if p.name == "modelserve-worker-a"]
        assert workers == [admin_models(http)["a"]["pid"]]


def test_streams_still_running_at_unload_end_as_unavailable(tmp_path: Path,
                                                            weights: Path) -> None:
    with tiny_server(tmp_path, [tiny("a", weights)],
                     lifecycle={"unload_grace_seconds": 0.3}) as (live, http):
        stream, events = long_stream(live.url)
        time.sleep(0.3)
        assert http.post("/admin/models/unload", params={"wait": "true"},
                         json={"name": "a"}).status_code == 200
        stream.join(timeout=10)
        assert assert_ended_cleanly(events) == "error"
        assert "stopped" in json.loads(events[-2])["error"]["message"]
