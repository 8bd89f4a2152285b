"""Writing to a worker's pipe without ever blocking the API process's event loop.

A pipe (a socket pair) buffers a few hundred KiB. A worker that stops reading (SIGSTOP, a
frozen cgroup, a swap storm) lets it fill, and a write on the event loop would then block
every model and `/health`. So the loop writes itself only what cannot block: a small message
when nothing waits before it and the socket reports room (Linux reports a unix socket
writable only while at most a quarter of its send buffer is in use); anything else waits
here for a thread of the worker's own to write it. The direct write saves that thread hop
on every request (measured in docs/benchmarks.md).

New work (calls, streams) is bounded: past MAX_QUEUED_BYTES or MAX_QUEUED_MESSAGES waiting
to be written, `put` refuses it and the route answers 429 (503 once the worker is known to be
unresponsive). Control messages (cancel, stop) are always queued: they are small, bounded by
the work already in flight, and must not be lost.
"""

from __future__ import annotations

import select
import threading
from collections import deque
from multiprocessing.connection import Connection

# A healthy worker drains its pipe within microseconds, so these bound only a stalled one:
# room for every request a model queues (chat: slots + max_waiting) several times over.
MAX_QUEUED_BYTES = 64 * 1024 * 1024
MAX_QUEUED_MESSAGES = 4096
# Messages up to this size may be written from the event loop: far below the free half of
# a writable socket's send buffer (212 KiB by default), so the write cannot block.
DIRECT_BYTES = 16 * 1024


class PipeWriter:
    def __init__(self, conn: Connection, name: str) -> None:
        self._conn = conn
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self._poll = select.poll()
        self._poll.register(conn.fileno(), select.POLLOUT)
        self.sent_bytes = 0
        self.sent_messages = 0
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, data: bytes, bounded: bool = True) -> bool:
        """Send or queue one message; False if `bounded` and the queue is full. A message
        larger than the cap is taken when nothing waits before it (a huge request stays
        possible)."""
        with self._cond:
            if self._closed:
                return True  # the worker is gone: its reader fails what is in flight
            if not self._queue and len(data) <= DIRECT_BYTES and self._writable():
                try:
                    self._conn.send_bytes(data)
                except (OSError, ValueError):
                    return True  # it died: the reader fails what is in flight
                self.sent_bytes += len(data)
                self.sent_messages += 1
                return True
            if bounded and self._queue and (
                    self._queued_bytes + len(data) > MAX_QUEUED_BYTES
                    or len(self._queue) >= MAX_QUEUED_MESSAGES):
                return False
            self._queue.append(data)
            self._queued_bytes += len(data)
            self._cond.notify()
        return True

    def _writable(self) -> bool:
        try:
            return bool(self._poll.poll(0))
        except (OSError, ValueError):
            return False

    @property
    def backlog(self) -> int:
        """Messages waiting to be written."""
        return len(self._queue)

    def close(self, wait: float = 0.0) -> None:
        """Stop writing (what is still queued is dropped: the worker is gone or going);
        wait up to `wait` s for the thread to end (its write fails fast on a dead pipe)."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._queued_bytes = 0
            self._cond.notify()
        if wait and self._thread.is_alive():
            self._thread.join(wait)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                data = self._queue[0]
            try:
                self._conn.send_bytes(data)  # blocks while the worker's pipe is full
            except (OSError, ValueError):  # the worker died or the pipe was closed
                self.close()
                return
            with self._cond:
                if self._queue and self._queue[0] is data:
                    self._queue.popleft()
                    self._queued_bytes -= len(data)
                self.sent_bytes += len(data)
                self.sent_messages += 1
