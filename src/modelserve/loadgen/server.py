"""A `modelserve serve` subprocess for a benchmark: started on a free port from a config
file, waited for until /ready, stopped afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_config(config: Path, ready_timeout: float = 300) -> Iterator[str]:
    """Yields the base URL once the server is ready."""
    port = free_port()
    env = {**os.environ, "MODELSERVE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "modelserve.cli", "serve", "--config",
                             str(config), "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the modelserve server did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)
