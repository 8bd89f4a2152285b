"""Incremental detokenization: valid UTF-8 across token boundaries, stop strings held back."""

from __future__ import annotations

import codecs


class IncrementalText:
    """Turns token bytes into text deltas that never contain (a prefix of) a stop string.

    Text that could still become a stop string is held back until it cannot; when a stop
    string appears, everything from it on is dropped and `stopped` becomes True.
    """

    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._holdback = max((len(s) for s in self._stop), default=1) - 1
        self._pending = ""  # decoded, not yet emitted
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text

    def push(self, data: bytes) -> str:
        """Feed one token's bytes; return the text that is now safe to emit."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(data)
        if not self._stop:
            out, self._pending = self._pending, ""
            return out
        cut = self._first_stop(self._pending)
        if cut is not None:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        safe = len(self._pending) - self._longest_stop_prefix_suffix(self._pending)
        out, self._pending = self._pending[:safe], self._pending[safe:]
        return out

    def flush(self) -> str:
        """The generation ended: release whatever was held back."""
        if self.stopped:
            return ""
        out = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        cut = self._first_stop(out)
        if cut is not None:
            self.stopped = True
            out = out[:cut]
        return out

    def _first_stop(self, text: str) -> int | None:
        hits = [(i, s) for s in self._stop if (i := text.find(s)) >= 0]
        if not hits:
            return None
        at, self.matched = min(hits)
        return at

    def _longest_stop_prefix_suffix(self, text: str) -> int:
        """Length of the longest tail of `text` that is a proper prefix of some stop string."""
        for size in range(min(self._holdback, len(text)), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self._stop):
                return size
        return 0
