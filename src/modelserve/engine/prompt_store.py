"""The prompt cache beyond the slots: KV of evicted prefixes, kept in host memory (LRU).

A slot keeps its last sequence's KV for the next request that shares its prefix, but only
until another prompt takes the slot. Before that happens the scheduler saves the slot's state
here (llama.cpp's per-sequence state, a byte string), keyed by the tokens it holds; a later
prompt whose longest cached prefix is here rather than in a free slot has it restored into
its slot instead of recomputing it: an agent's next turn, a chat user back after many other
conversations, a client retrying a prompt it cancelled.

Keys are token ids, image spans included as their hash pseudo-tokens, so an image's KV is
only ever reused for the very same image. The store belongs to one loaded model file and
dies with its worker, so no other model's KV can be restored.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# Saving and restoring copy the whole prefix: worth it only when they spare a real prefill.
MIN_SAVE_TOKENS = 64
MIN_RESTORE_GAIN = 32


@dataclass(eq=False)
class StoredPrefix:
    tokens: npt.NDArray[np.int64]
    state: bytes | bytearray = b""  # llama_state_seq_get_data of a slot holding `tokens`
    id: int = field(default=0)

    @property
    def nbytes(self) -> int:
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

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.bytes = 0
        self.stats = StoreStats()
        self._entries: OrderedDict[int, StoredPrefix] = OrderedDict()
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, prompt: list[int]) -> tuple[StoredPrefix | None, int]:
        """The entry sharing the longest prefix with `prompt`, and that length."""
        if not self._entries:
            return None, 0
        tokens = np.asarray(prompt, dtype=np.int64)
        best, best_len = None, 0
        for entry in self._entries.values():
            if len(entry.tokens) and len(tokens) and entry.tokens[0] == tokens[0]:
                shared = entry.shared_with(tokens)
                if shared > best_len:
                    best, best_len = entry, shared
        return best, best_len

    def covers(self, tokens: list[int]) -> bool:
        """Whether an entry already holds all of `tokens` (saving them again adds nothing)."""
        _, shared = self.longest(tokens)
        return shared >= len(tokens)

    def touch(self, entry: StoredPrefix, restored_tokens: int) -> None:
        """A restore used `entry`: it becomes the most recently used."""
        if entry.id in self._entries:
            self._entries.move_to_end(entry.id)
        self.stats.hits += 1
        self.stats.restored_tokens += restored_tokens

    def put(self, tokens: list[int], state: bytes | bytearray) -> None:
        """Keep `state` for `tokens`; entries it extends (their tokens are a prefix of these)
        go, then the least recently used ones until the store fits its capacity."""
        entry = StoredPrefix(np.asarray(tokens, dtype=np.int64), state, self._next_id)
        if entry.nbytes > self.capacity_bytes:
            return
        self._next_id += 1
        for old in list(self._entries.values()):
            if len(old.tokens) <= len(entry.tokens) and \
                    entry.shared_with(old.tokens) == len(old.tokens):
                self._drop(old)
        self._entries[entry.id] = entry
        self.bytes += entry.nbytes
        self.stats.saves += 1
        while self.bytes > self.capacity_bytes:
            self._drop(next(iter(self._entries.values())))
            self.stats.evictions += 1

    def _drop(self, entry: StoredPrefix) -> None:
        del self._entries[entry.id]
        self.bytes -= entry.nbytes
