"""The prompt store's spill to disk: saved prefixes that outlive a reload or a restart.

Each entry is one file, written by a background thread (a save never waits on the disk):

    MAGIC, header length (u32), header JSON {identity, n_tokens, state_bytes, salt},
    tokens (int64 x n_tokens), state (llama.cpp's per-sequence state)

Files live in a folder named after the model's identity (its files' revision and the context
layout the state depends on), and every read checks the header's identity and token count
again, and the tokens and salt against the key they were found under: a state is never
restored into another model, another file, a context it does not fit, or another scope.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

MAGIC = b"MSKV1\n"


@dataclass(frozen=True)
class SpilledPrefix:
    tokens: npt.NDArray[np.int64]
    path: Path
    state_bytes: int
    salt: str = ""


class PromptSpill:
    """One model's folder of spilled prefixes, bounded in bytes (oldest files go first)."""

    def __init__(self, root: Path, identity: str, capacity_bytes: int) -> None:
        self.identity = identity
        self.folder = root / identity
        self.folder.mkdir(parents=True, exist_ok=True)
        self.capacity_bytes = capacity_bytes
        self._writes: queue.Queue[
            tuple[npt.NDArray[np.int64], bytes | bytearray, str] | None] = queue.Queue(maxsize=64)
        self._writer = threading.Thread(target=self._write_loop, name="prompt-spill",
                                        daemon=True)
        self._writer.start()

    def path_for(self, tokens: npt.NDArray[np.int64], salt: str = "") -> Path:
        digest = hashlib.sha256(tokens.tobytes() + salt.encode()).hexdigest()[:32]
        return self.folder / f"{digest}.kv"

    def write(self, tokens: npt.NDArray[np.int64], state: bytes | bytearray,
              salt: str = "") -> None:
        """Queue a file for the entry; dropped (with a log line) when the disk lags."""
        try:
            self._writes.put_nowait((tokens, state, salt))
        except queue.Full:
            logger.warning("prompt spill is behind; a saved prefix stays in memory only")

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def scan(self) -> list[SpilledPrefix]:
        """What the folder holds from earlier runs, oldest first (bad files are removed)."""
        found = []
        files = sorted(self.folder.glob("*.kv"), key=lambda p: p.stat().st_mtime)
        for path in files:
            try:
                tokens, state_bytes, salt = self._read_head(path)
            except (OSError, ValueError) as exc:
                logger.warning("removing unreadable spilled prefix %s: %s", path.name, exc)
                path.unlink(missing_ok=True)
                continue
            found.append(SpilledPrefix(tokens, path, state_bytes, salt))
        return found

    def read_state(self, path: Path, tokens: npt.NDArray[np.int64], salt: str = "") -> bytes:
        """The state of the file for `tokens` in scope `salt`; ValueError if the file is not
        that entry."""
        with path.open("rb") as handle:
            header = self._header(handle)
            stored = np.frombuffer(handle.read(8 * header["n_tokens"]), dtype=np.int64)
            if not np.array_equal(stored, tokens):
                raise ValueError(f"{path.name} holds other tokens")
            if header["salt"] != salt:
                raise ValueError(f"{path.name} was saved in another scope")
            state = handle.read(header["state_bytes"])
        if len(state) != header["state_bytes"]:
            raise ValueError(f"{path.name} is truncated")
        return state

    def flush(self) -> None:
        """Wait for the queued writes."""
        self._writes.join()

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued writes (a restart then finds them)."""
        self._writes.put(None)
        self._writer.join(timeout)

    # -- the writer thread ----------------------------------------------------------------

    def _write_loop(self) -> None:
        while (item := self._writes.get()) is not None:
            tokens, state, salt = item
            try:
                self._write_file(tokens, state, salt)
                self._trim()
            except OSError:
                logger.exception("spilling a saved prefix to disk failed")
            finally:
                self._writes.task_done()

    def _write_file(self, tokens: npt.NDArray[np.int64], state: bytes | bytearray,
                    salt: str) -> None:
        path = self.path_for(tokens, salt)
        header = json.dumps({"identity": self.identity, "n_tokens": len(tokens),
                             "state_bytes": len(state), "salt": salt}).encode()
        partial = path.with_suffix(".part")
        with partial.open("wb") as handle:
            handle.write(MAGIC + struct.pack("<I", len(header)) + header)
            handle.write(tokens.astype(np.int64).tobytes())
            handle.write(state)
        os.replace(partial, path)  # a reader never sees half a file

    def _trim(self) -> None:
        files = sorted(self.folder.glob("*.kv"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > self.capacity_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)

    def _header(self, handle: object) -> dict[str, Any]:
        read = handle.read  # type: ignore[attr-defined]
        if read(len(MAGIC)) != MAGIC:
            raise ValueError("not a modelserve prompt file")
        (size,) = struct.unpack("<I", read(4))
        header = json.loads(read(size))
        if header.get("identity") != self.identity:
            raise ValueError("saved for another model or context layout")
        return {"n_tokens": int(header["n_tokens"]), "state_bytes": int(header["state_bytes"]),
                "salt": str(header.get("salt", ""))}

    def _read_head(self, path: Path) -> tuple[npt.NDArray[np.int64], int, str]:
        with path.open("rb") as handle:
            header = self._header(handle)
            tokens = np.frombuffer(handle.read(8 * header["n_tokens"]), dtype=np.int64)
        if len(tokens) != header["n_tokens"]:
            raise ValueError("truncated")
        return tokens.copy(), header["state_bytes"], header["salt"]
