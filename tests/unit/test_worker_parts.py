"""The worker boundary's pure parts: the bounded writer, stream batching, the sinks a death
ends, and the registry's states, leases and restart backoff."""

from __future__ import annotations

import asyncio
import threading
import time
from multiprocessing import Pipe
from typing import Any

import pytest

from modelserve.config import ModelSpec
from modelserve.config_sections import LifecycleSettings
from modelserve.failures import WorkerDied
from modelserve.lifecycle import Lifecycle
from modelserve.registry import Lease, LoadedModel, ModelEntry, ModelRegistry, ModelState
from modelserve.worker import pipe
from modelserve.worker.methods import Outbox, StreamOut, open_stream, runtime_method
from modelserve.worker.protocol import End, loads
from modelserve.worker.transport import Sinks


def test_the_writer_refuses_new_work_past_its_cap_but_never_control_messages(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipe, "MAX_QUEUED_MESSAGES", 2)
    ours, theirs = Pipe()
    writer = pipe.PipeWriter(ours, "test")  # not started: nothing drains the queue
    assert writer.put(b"x" * 10**6)  # alone, any size is taken
    assert writer.put(b"second")
    assert not writer.put(b"third")
    assert writer.put(b"cancel", bounded=False) and writer.backlog == 3
    writer.start()
    assert [theirs.recv_bytes() for _ in range(3)] == [b"x" * 10**6, b"second", b"cancel"]
    deadline = time.monotonic() + 5
    while writer.backlog and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.sent_messages == 3 and writer.put(b"again")
    writer.close()
    assert writer.put(b"after close")  # dropped: the reader fails what was in flight


def test_the_writer_stops_when_the_worker_is_gone() -> None:
    ours, theirs = Pipe()
    writer = pipe.PipeWriter(ours, "test")
    writer.start()
    theirs.close()
    for _ in range(3):
        writer.put(b"y" * 10**6)
    deadline = time.monotonic() + 5
    while writer.backlog and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.backlog == 0  # it gave up on the dead pipe and dropped the rest


def test_stream_items_from_threads_go_out_as_one_batch_per_flush() -> None:
    batches: list[list[tuple[int, Any]]] = []
    ended: list[int] = []
    outbox = Outbox(batches.append)
    outbox.flushed_by_runtime = True  # the engine flushes after each step
    out = StreamOut(outbox, 7, ended.append)
    threads = [threading.Thread(target=out.send, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.end(RuntimeError("boom"))
    out.end()  # only once
    out.send("late")  # after the end: dropped
    outbox.flush()
    outbox.flush()  # nothing left: no empty message
    assert len(batches) == 1 and ended == [7]
    items = batches[0]
    assert sorted(i for _, i in items[:5]) == list(range(5))
    assert isinstance(items[-1][1], End) and str(items[-1][1].error) == "boom"


def test_without_an_engine_the_loop_flushes_once_per_turn() -> None:
    async def scenario() -> list[list[tuple[int, Any]]]:
        batches: list[list[tuple[int, Any]]] = []
        outbox = Outbox(batches.append)
        outbox.bind(asyncio.get_running_loop())
        out = StreamOut(outbox, 1, lambda _: None)
        for i in range(3):
            out.send(i)
        await asyncio.sleep(0.01)
        return batches

    assert asyncio.run(scenario()) == [[(1, 0), (1, 1), (1, 2)]]


class Streamy:
    async def ticks(self, n: int) -> Any:
        for i in range(n):
            yield i

    def counted(self, n: int) -> Any:
        yield from range(n)

    def failing(self) -> Any:
        raise ValueError("bad")
        yield  # a generator all the same


def test_stream_methods_of_every_form_end_with_an_end() -> None:
    async def run(method: str, *args: Any) -> list[Any]:
        items: list[tuple[int, Any]] = []
        outbox = Outbox(items.extend)
        outbox.bind(asyncio.get_running_loop())
        fn = runtime_method(Streamy(), None, method)  # type: ignore[arg-type]
        open_stream(fn, args, StreamOut(outbox, 1, lambda _: None), None)
        for _ in range(100):
            await asyncio.sleep(0.005)
            if items and isinstance(items[-1][1], End):
                break
        return [item for _, item in items]

    ticks = asyncio.run(run("ticks", 3))
    assert ticks[:3] == [0, 1, 2] and ticks[3] == End()
    counted = asyncio.run(run("counted", 2))
    assert counted[:2] == [0, 1] and counted[2] == End()
    failed = asyncio.run(run("failing"))
    assert len(failed) == 1 and isinstance(failed[0].error, ValueError)
    with pytest.raises(AttributeError, match="no method '_private'"):
        runtime_method(Streamy(), None, "_private")  # type: ignore[arg-type]


def test_a_death_ends_every_open_stream_and_nothing_after() -> None:
    got: list[Any] = []
    sinks = Sinks()
    sinks.add(1, got.append)
    sinks.add(2, got.append)
    sinks.deliver([(1, "a"), (1, End()), (1, "late"), (3, "unknown")])
    assert got == ["a", End()] and 1 not in sinks and 2 in sinks
    sinks.end_all(WorkerDied("gone"))
    assert isinstance(got[-1].error, WorkerDied) and 2 not in sinks


class Front:
    created = 0
    closed = False

    def card(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.closed = True


class DeadWorker:
    exit_reason = None

    def rss_bytes(self) -> int:
        return 10


def spec(name: str = "m") -> ModelSpec:
    return ModelSpec.model_validate({"name": name, "source": "/dev/null"})


def test_a_retired_front_closes_with_its_last_lease() -> None:
    front = Front()
    loaded = LoadedModel(front, DeadWorker(), spec(), "rev", 1000, 0.0)  # type: ignore[arg-type]
    entry = ModelEntry(spec())
    first, second = Lease(entry, loaded), Lease(entry, loaded)
    assert loaded.memory_bytes == 1000  # the estimate beats a small RSS
    loaded.retired = True
    first.release()
    first.release()  # twice is once
    assert not front.closed
    second.release()
    assert front.closed and loaded.in_flight == 0


def test_restart_backoff_doubles_to_its_cap() -> None:
    registry = ModelRegistry([], LifecycleSettings(restart_backoff_seconds=1,
                                                   restart_backoff_max_seconds=5))
    lifecycle = Lifecycle(registry)
    entry = ModelEntry(spec())
    assert [lifecycle._backoff(entry) for _ in range(5)] == [1, 2, 4, 5, 5]


def test_requests_wait_for_a_restart_only_when_it_comes_in_time() -> None:
    async def scenario() -> tuple[float, str]:
        registry = ModelRegistry([spec()], LifecycleSettings(load_wait_seconds=0.5))
        entry = registry.entries["m"]
        entry.set_state(ModelState.RESTARTING)
        entry.next_restart_at = time.time() + 30  # later than any request waits
        started = time.monotonic()
        with pytest.raises(Exception) as refused:
            await registry.acquire("m")
        waited = time.monotonic() - started
        entry.next_restart_at = None  # the attempt is running: wait for it
        entry.error = "x"
        waiting = asyncio.ensure_future(registry.acquire("m"))
        await asyncio.sleep(0.05)
        entry.set_state(ModelState.FAILED)
        with pytest.raises(Exception) as failed:
            await waiting
        return waited, f"{refused.value.retry_after} {failed.value}"  # type: ignore[attr-defined]

    waited, text = asyncio.run(scenario())
    assert waited < 0.1  # refused at once, not after load_wait_seconds
    assert text.startswith("31.0") and "failed to load: x" in text


def test_protocol_messages_round_trip() -> None:
    from modelserve.worker.protocol import Replies, Reply, dumps, portable_error

    class Unpicklable(Exception):
        def __reduce__(self) -> Any:
            raise TypeError("no")

    message = loads(dumps(Replies([Reply(1, "ok"), Reply(2, None, ValueError("x"))])))
    assert message.items[0].value == "ok" and str(message.items[1].error) == "x"
    assert isinstance(portable_error(Unpicklable("y")), RuntimeError)


def test_an_async_stream_cancelled_before_its_first_step_still_ends() -> None:
    async def scenario() -> list[Any]:
        items: list[tuple[int, Any]] = []
        outbox = Outbox(items.extend)
        outbox.bind(asyncio.get_running_loop())
        fn = runtime_method(Streamy(), None, "ticks")  # type: ignore[arg-type]
        cancel = open_stream(fn, (3,), StreamOut(outbox, 1, lambda _: None), None)
        cancel()  # in the same turn of the loop as the open
        await asyncio.sleep(0.05)
        return [item for _, item in items]

    assert asyncio.run(scenario()) == [End()]
