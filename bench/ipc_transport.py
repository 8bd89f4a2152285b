"""What one engine step's outputs cost to move from a worker process to the API process.

Issue 13 moves each model into a worker process; every engine step then sends the step's
outputs of all running sequences to the API process in ONE message (vLLM's EngineCoreOutputs
idea). This measures that hop for the candidate transports, with a message shaped like a real
step (N sequences, one token each, a few bytes of text), in alternating rounds:

    zmq+msgspec   pyzmq PUSH/PULL over ipc://, msgspec msgpack Structs (what vLLM does)
    pipe+msgspec  multiprocessing.Pipe (send_bytes), msgspec msgpack Structs
    pipe+pickle   multiprocessing.Pipe (send), pickled dataclasses

Two figures per transport, at 1, 8 and 32 sequences per step:
- throughput: the worker sends steps back to back; steps/s the API side receives and decodes;
- round trip: the worker waits for a one-byte reply to each step before the next, so µs/step
  is two hops plus encode and decode: an upper bound on what the split adds to each token.
The engine's own step is ~10 ms at 1 stream and ~70 ms at 32 on 2 cores (docs/benchmarks.md).

    python3 -m venv /tmp/ipc-venv && /tmp/ipc-venv/bin/pip install pyzmq msgspec
    /tmp/ipc-venv/bin/python bench/ipc_transport.py [--steps 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import zmq


class Output(msgspec.Struct, array_like=True, gc=False):
    seq_id: int
    token_ids: list[int]
    text: str
    finish_reason: str | None = None


class StepOutputs(msgspec.Struct, array_like=True, gc=False):
    step: int
    outputs: list[Output]


@dataclass
class PickledOutput:
    seq_id: int
    token_ids: list[int]
    text: str
    finish_reason: str | None = None


@dataclass
class PickledStep:
    step: int
    outputs: list[PickledOutput] = field(default_factory=list)


def step_message(step: int, n: int) -> StepOutputs:
    return StepOutputs(step, [Output(i, [1000 + step % 5000], " word") for i in range(n)])


def pickled_message(step: int, n: int) -> PickledStep:
    return PickledStep(step, [PickledOutput(i, [1000 + step % 5000], " word") for i in range(n)])


# -- senders (the worker side): build each step's message, encode, send ---------------------

def send_zmq(address: str, steps: int, n: int, acked: bool) -> None:
    sock = zmq.Context().socket(zmq.PAIR)
    sock.connect(address)
    encode = msgspec.msgpack.Encoder().encode
    for step in range(steps):
        sock.send(encode(step_message(step, n)), copy=False)
        if acked:
            sock.recv()
    sock.send(b"")


def send_pipe_msgspec(conn: Connection, steps: int, n: int, acked: bool) -> None:
    encode = msgspec.msgpack.Encoder().encode
    for step in range(steps):
        conn.send_bytes(encode(step_message(step, n)))
        if acked:
            conn.recv_bytes()
    conn.send_bytes(b"")


def send_pipe_pickle(conn: Connection, steps: int, n: int, acked: bool) -> None:
    for step in range(steps):
        conn.send_bytes(pickle.dumps(pickled_message(step, n), protocol=5))
        if acked:
            conn.recv_bytes()
    conn.send_bytes(b"")


# -- receivers (the API side): receive and decode every step -------------------------------

def run_zmq(steps: int, n: int, acked: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        address = f"ipc://{Path(tmp) / 'outputs'}"
        sock = zmq.Context().socket(zmq.PAIR)
        sock.bind(address)
        decode = msgspec.msgpack.Decoder(StepOutputs).decode
        worker = mp.get_context("spawn").Process(target=send_zmq,
                                                 args=(address, steps, n, acked))
        worker.start()
        sock.recv()  # the first step: the clock starts once the worker runs
        if acked:
            sock.send(b"k")
        started = time.perf_counter()
        count = 1
        while frame := sock.recv(copy=False).bytes:
            decode(frame)
            count += 1
            if acked:
                sock.send(b"k")
        elapsed = time.perf_counter() - started
        worker.join()
        sock.close()
    return (count - 1) / elapsed


def run_pipe(steps: int, n: int, codec: str, acked: bool) -> float:
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=True)
    target: Any = send_pipe_msgspec if codec == "msgspec" else send_pipe_pickle
    decode: Any = (msgspec.msgpack.Decoder(StepOutputs).decode if codec == "msgspec"
                   else pickle.loads)
    worker = ctx.Process(target=target, args=(send, steps, n, acked))
    worker.start()
    receive.recv_bytes()
    if acked:
        receive.send_bytes(b"k")
    started = time.perf_counter()
    count = 1
    while frame := receive.recv_bytes():
        decode(frame)
        count += 1
        if acked:
            receive.send_bytes(b"k")
    elapsed = time.perf_counter() - started
    worker.join()
    return (count - 1) / elapsed


TRANSPORTS = {
    "zmq+msgspec": lambda steps, n, acked: run_zmq(steps, n, acked),
    "pipe+msgspec": lambda steps, n, acked: run_pipe(steps, n, "msgspec", acked),
    "pipe+pickle": lambda steps, n, acked: run_pipe(steps, n, "pickle", acked),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequences", default="1,8,32")
    opts = parser.parse_args()
    results: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(opts.rounds):
        for mode, acked in (("throughput", False), ("round trip", True)):
            for n in (int(x) for x in opts.sequences.split(",")):
                for name, run in TRANSPORTS.items():
                    results.setdefault((mode, name, n), []).append(run(opts.steps, n, acked))
    print("| mode | transport | sequences/step | steps/s (median) | µs/step | per round |")
    print("|---|---|---|---|---|---|")
    for (mode, name, n), rates in results.items():
        median = statistics.median(rates)
        rounds = " / ".join(f"{r:,.0f}" for r in rates)
        print(f"| {mode} | {name} | {n} | {median:,.0f} | {1e6 / median:.1f} | {rounds} |")


if __name__ == "__main__":
    main()
