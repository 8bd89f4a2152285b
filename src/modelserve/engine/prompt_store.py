"""The prompt cache beyond the slots: KV of evicted prefixes, kept in host memory (LRU).

A slot keeps its last sequence's KV for the next request that shares its prefix, but only
until another prompt takes the slot. Before that happens the scheduler saves the slot's state
here (llama.cpp's per-sequence state, a byte string), keyed by the tokens it holds; a later
prompt whose longest cached prefix is here rather than in a free slot has it restored into
its slot instead of recomputing it: an agent's next turn, a chat user back after many other
conversations, a client retrying a prompt it cancelled.

Keys are token ids, image spans included as their hash pseudo-tokens, so an image's KV is
only ever reused for the very same image, and a salt: an entry is found only by prompts with
the salt it was saved under (a per-API-key scope, or a client's `cache_salt`). The store
belongs to one loaded model file; with a spill folder (engine/prompt_spill.py) every saved
entry is also written to disk, stays there when memory evicts it, and is found again after a
reload or a restart of the same model.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from modelserve.engine.prompt_spill import PromptSpill, SpilledPrefix

logger = logging.getLogger(__name__)

# Saving and restoring copy the whole prefix: worth it only when they spare a real prefill.
MIN_SAVE_TOKENS = 64
MIN_RESTORE_GAIN = 32


@dataclass(eq=False)
class StoredPrefix:
    tokens: npt.NDArray[np.int64]
    state: bytes | bytearray = b""  # llama_state_seq_get_data of a slot holding `tokens`
    id: int = field(default=0)
    path: Path | None = None  # its spilled file; with an empty `state`: on disk only
    salt: str = ""  # the scope it was saved in: found only by prompts with the same salt

    @property
    def nbytes(self) -> int:
        """Memory it takes."""
        return len(self.state) + self.tokens.nbytes

    def shared_with(self, prompt: npt.NDArray[np.int64]) -> int:
        """Length of the common prefix of this entry's tokens and `prompt`."""
        n = min(len(self.tokens), len(prompt))
        differ = np.flatnonzero(self.tokens[:n] != prompt[:n])
        return int(differ[0]) if len(differ) else n


@dataclass
class StoreStats:
    saves: int = 0
    hits: int = 0
    restored_tokens: int = 0
    evictions: int = 0


class PromptStore:
    """Saved prefixes, least recently used first out once over `capacity_bytes`."""

    def __init__(self, capacity_bytes: int, spill: PromptSpill | None = None) -> None:
        self.capacity_bytes = capacity_bytes
        self.bytes = 0
        self.stats = StoreStats()
        self.spill = spill
        self._entries: OrderedDict[int, StoredPrefix] = OrderedDict()
        self._next_id = 0
        if spill is not None:
            self._adopt(spill.scan())

    def _adopt(self, spilled: Iterable[SpilledPrefix]) -> None:
        """Entries an earlier run spilled: on disk only, until a prompt needs one."""
        for found in spilled:
            self._entries[self._next_id] = StoredPrefix(found.tokens, b"", self._next_id,
                                                        found.path, found.salt)
            self._next_id += 1

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, prompt: list[int], salt: str = ""
                ) -> tuple[StoredPrefix | None, int]:
        """The entry of scope `salt` sharing the longest prefix with `prompt`, and that
        length."""
        if not self._entries:
            return None, 0
        tokens = np.asarray(prompt, dtype=np.int64)
        best, best_len = None, 0
        for entry in self._entries.values():
            if entry.salt == salt and len(entry.tokens) and len(tokens) \
                    and entry.tokens[0] == tokens[0]:
                shared = entry.shared_with(tokens)
                if shared > best_len:
                    best, best_len = entry, shared
        return best, best_len

    def covers(self, tokens: list[int], salt: str = "") -> bool:
        """Whether an entry of scope `salt` already holds all of `tokens` (saving them again
        adds nothing)."""
        _, shared = self.longest(tokens, salt)
        return shared >= len(tokens)

    def load(self, entry: StoredPrefix) -> bool:
        """Make sure the entry's state is in memory (read from its file if spilled); False,
        and the entry is gone, when its file is missing or is not that entry."""
        if entry.state:
            return True
        assert self.spill is not None and entry.path is not None
        try:
            entry.state = self.spill.read_state(entry.path, entry.tokens, entry.salt)
        except (OSError, ValueError) as exc:
            logger.warning("a spilled prefix could not be read back: %s", exc)
            self._drop(entry)
            return False
        self.bytes += len(entry.state)
        self._entries.move_to_end(entry.id)
        self._fit()
        return True

    def touch(self, entry: StoredPrefix, restored_tokens: int) -> None:
        """A restore used `entry`: it becomes the most recently used."""
        if entry.id in self._entries:
            self._entries.move_to_end(entry.id)
        self.stats.hits += 1
        self.stats.restored_tokens += restored_tokens

    def put(self, tokens: list[int], state: bytes | bytearray, salt: str = "") -> None:
        """Keep `state` for `tokens` in scope `salt`; entries of that scope it extends (their
        tokens are a prefix of these) go, then the least recently used ones until the store
        fits its capacity."""
        entry = StoredPrefix(np.asarray(tokens, dtype=np.int64), state, self._next_id,
                             salt=salt)
        if entry.nbytes > self.capacity_bytes:
            return
        self._next_id += 1
        for old in list(self._entries.values()):
            if old.salt == salt and len(old.tokens) <= len(entry.tokens) and \
                    entry.shared_with(old.tokens) == len(old.tokens):
                self._drop(old)
        if self.spill is not None:
            entry.path = self.spill.path_for(entry.tokens, salt)
            self.spill.write(entry.tokens, state, salt)
        self._entries[entry.id] = entry
        self.bytes += entry.nbytes
        self.stats.saves += 1
        self._fit()

    def _fit(self) -> None:
        """Evict the least recently used states until memory fits; a spilled entry stays
        listed, on disk only."""
        for entry in list(self._entries.values()):
            if self.bytes <= self.capacity_bytes:
                return
            if not entry.state:
                continue
            self.stats.evictions += 1
            if entry.path is not None:
                self.bytes -= len(entry.state)
                entry.state = b""
            else:
                self._drop(entry)

    def _drop(self, entry: StoredPrefix) -> None:
        del self._entries[entry.id]
        self.bytes -= entry.nbytes
        if entry.path is not None and self.spill is not None:
            self.spill.remove(entry.path)
