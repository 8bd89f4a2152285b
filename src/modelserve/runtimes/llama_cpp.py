"""Thin, typed wrapper over llama-cpp-python's low-level (ctypes) API.

Only what the chat engine needs: load a GGUF (mmap), tokenize, detokenize, read metadata,
own one context with N sequence slots, decode a batch, and build per-sequence samplers.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as lc
import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

_backend_lock = threading.Lock()
_backend_ready = False


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            lc.llama_backend_init()
            _backend_ready = True
            # What this build runs on is the first thing to know when it faults.
            logger.info("llama.cpp (llama-cpp-python %s) built for: %s", lc.__version__,
                        " ".join(sorted(f for f, on in compiled_features().items() if on)))


def system_info() -> str:
    """llama.cpp's own line about its build, e.g. "CPU : SSE3 = 1 | AVX2 = 1 | ..."."""
    return bytes(lc.llama_print_system_info()).decode("utf-8", errors="replace")


def compiled_features() -> dict[str, bool]:
    """Every "NAME = 0|1" llama.cpp reports: the CPU features its kernels were compiled for."""
    return {name: value == "1"
            for name, value in re.findall(r"([A-Z][A-Z0-9_]*) = (\d+)", system_info())}


class LlamaError(RuntimeError):
    """llama.cpp refused to load or run something."""


class LlamaModel:
    """A loaded GGUF model: weights (mmap'ed) and vocabulary."""

    def __init__(self, path: Path, gpu_layers: int = 0, vocab_only: bool = False) -> None:
        """`vocab_only`: the tokenizer and metadata without the weights (an API process's
        front end tokenizes with it while the model runs in its worker)."""
        _init_backend()
        params = lc.llama_model_default_params()
        params.n_gpu_layers = gpu_layers
        params.use_mmap = True
        params.vocab_only = vocab_only
        lc_logger = logging.getLogger("llama-cpp-python")
        level = lc_logger.level
        if vocab_only:  # it dumps every metadata key as a warning: not one worth showing
            lc_logger.setLevel(logging.ERROR)
        try:
            model = lc.llama_model_load_from_file(str(path).encode(), params)
        finally:
            lc_logger.setLevel(level)
        if not model:
            raise LlamaError(f"llama.cpp could not load {path}")
        self.path = path
        self._model = model
        self._vocab = lc.llama_model_get_vocab(model)
        self.n_vocab: int = lc.llama_vocab_n_tokens(self._vocab)
        self.n_embd_inp: int = lc.llama_model_n_embd_inp(model)  # width of input embeddings
        self.bos_token_id: int = lc.llama_vocab_bos(self._vocab)
        self.eos_token_id: int = lc.llama_vocab_eos(self._vocab)
        self.add_bos: bool = bool(lc.llama_vocab_get_add_bos(self._vocab))
        self._pieces: dict[int, bytes] = {}

    @property
    def handle(self) -> Any:
        return self._model

    @property
    def vocab_handle(self) -> Any:
        return self._vocab

    def close(self) -> None:
        if self._model:
            lc.llama_model_free(self._model)
            self._model = None
            # The vocabulary lives in the model: a use after this would read freed memory.
            self._vocab = _ClosedVocab()

    @property
    def size_bytes(self) -> int:
        return int(lc.llama_model_size(self._model))

    def kv_bytes_per_token(self) -> int | None:
        """The KV cache's cost of one context token (f16 K and V in every layer), from the
        GGUF's metadata, which a vocabulary-only load has too (llama.cpp's hparams getters
        abort on one); None if a key is missing or varies per layer. An upper bound for
        sliding-window models (Gemma 3), whose local layers keep less."""
        arch = self.architecture
        try:
            layers = int(self.meta(f"{arch}.block_count") or "")
            embd = int(self.meta(f"{arch}.embedding_length") or "")
            heads = int(self.meta(f"{arch}.attention.head_count") or "")
            kv_heads = int(self.meta(f"{arch}.attention.head_count_kv") or heads)
            key = int(self.meta(f"{arch}.attention.key_length") or embd // max(heads, 1))
            value = int(self.meta(f"{arch}.attention.value_length") or key)
        except ValueError:
            return None
        return 2 * layers * kv_heads * (key + value)

    def chat_template(self) -> str | None:
        raw = lc.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as text (a vocab-only load reads them too); None if absent."""
        return _text(lambda buf, size: lc.llama_model_meta_val_str(
            self._model, key.encode(), buf, size))

    def metadata(self) -> dict[str, str]:
        """Every GGUF metadata key with its value as text (llama.cpp abbreviates arrays)."""
        out = {}
        for i in range(lc.llama_model_meta_count(self._model)):
            key = _text(functools.partial(lc.llama_model_meta_key_by_index, self._model, i))
            value = _text(functools.partial(lc.llama_model_meta_val_str_by_index,
                                            self._model, i))
            if key is not None and value is not None:
                out[key] = value
        return out

    @property
    def architecture(self) -> str | None:
        return self.meta("general.architecture")

    def has_token(self, text: str) -> bool:
        """Whether the vocabulary holds `text` (e.g. a control token) as one token."""
        return len(self.tokenize(text, add_special=False, parse_special=True)) == 1

    def tokenize(self, text: str, add_special: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (lc.llama_token * capacity)()
        n = lc.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_special,
                              parse_special)
        if n < 0:
            capacity = -n
            tokens = (lc.llama_token * capacity)()
            n = lc.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_special,
                                  parse_special)
        if n < 0:
            raise LlamaError("tokenization failed")
        return list(tokens[:n])

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        """The bytes a token stands for (special tokens render empty unless asked)."""
        key = token if not special else -token - 1
        cached = self._pieces.get(key)
        if cached is not None:
            return cached
        buf = ctypes.create_string_buffer(64)
        n = lc.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        piece = buf.raw[:n]
        self._pieces[key] = piece
        return piece

    def token_text(self, token: int, special: bool = True) -> str:
        return self.token_bytes(token, special).decode("utf-8", errors="replace")

    @property
    def probe_token(self) -> int:
        """A real token to decode when timing or checking a context: BOS, else id 0."""
        return self.bos_token_id if 0 <= self.bos_token_id < self.n_vocab else 0

    def is_eog(self, token: int) -> bool:
        return bool(lc.llama_vocab_is_eog(self._vocab, token))

    def apply_builtin_template(self, name: str, messages: list[tuple[str, str]]) -> str | None:
        """Render with one of llama.cpp's built-in templates (e.g. "chatml"); None if unknown."""
        keep = [(role.encode(), content.encode()) for role, content in messages]
        chat = (lc.llama_chat_message * len(keep))()
        for i, (role, content) in enumerate(keep):
            chat[i].role = role
            chat[i].content = content
        size = sum(len(r) + len(c) for r, c in keep) * 2 + 256
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = lc.llama_chat_apply_template(name.encode(), chat, len(keep), True, buf, size)
            if n < 0:
                return None
            if n <= size:
                return buf.raw[:n].decode("utf-8", errors="replace")
            size = n
        return None


class _ClosedVocab:
    """Stands for a freed vocabulary: ctypes refuses it as an argument (a Python error where
    a dangling pointer would have been a segfault)."""


@dataclass(frozen=True)
class SamplerConfig:
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    seed: int
    presence_penalty: float
    frequency_penalty: float
    repeat_penalty: float
    penalty_last_n: int
    logit_bias: tuple[tuple[int, float], ...]


class Sampler:
    """One llama.cpp sampler chain (owned by one sequence)."""

    def __init__(self, model: LlamaModel, cfg: SamplerConfig) -> None:
        params = lc.llama_sampler_chain_default_params()
        params.no_perf = True
        self._chain = lc.llama_sampler_chain_init(params)

        def add(sampler: Any) -> None:
            lc.llama_sampler_chain_add(self._chain, sampler)

        if cfg.logit_bias:
            biases = (lc.llama_logit_bias * len(cfg.logit_bias))()
            for i, (token, bias) in enumerate(cfg.logit_bias):
                biases[i].token = token
                biases[i].bias = bias
            add(lc.llama_sampler_init_logit_bias(model.n_vocab, len(cfg.logit_bias), biases))
        if cfg.presence_penalty or cfg.frequency_penalty or cfg.repeat_penalty != 1.0:
            add(lc.llama_sampler_init_penalties(
                model.n_vocab, cfg.penalty_last_n, cfg.repeat_penalty, cfg.frequency_penalty,
                cfg.presence_penalty))
        if cfg.temperature <= 0:
            add(lc.llama_sampler_init_greedy())
            return
        if cfg.top_k > 0:
            add(lc.llama_sampler_init_top_k(cfg.top_k))
        if cfg.top_p < 1.0:
            add(lc.llama_sampler_init_top_p(cfg.top_p, 1))
        if cfg.min_p > 0:
            add(lc.llama_sampler_init_min_p(cfg.min_p, 1))
        add(lc.llama_sampler_init_temp(cfg.temperature))
        add(lc.llama_sampler_init_dist(cfg.seed & 0xFFFFFFFF))

    def sample(self, ctx: LlamaContext, batch_index: int) -> int:
        """Sample from the logits of one batch row; the chain records the token itself."""
        return int(lc.llama_sampler_sample(self._chain, ctx.handle, batch_index))

    def close(self) -> None:
        if self._chain:
            lc.llama_sampler_free(self._chain)
            self._chain = None


class LlamaContext:
    """One llama.cpp context with `n_seq` independent sequence slots (one KV stream each)."""

    def __init__(self, model: LlamaModel, n_seq: int, ctx_per_seq: int, batch_size: int,
                 threads: int | None) -> None:
        params = lc.llama_context_default_params()
        params.n_ctx = n_seq * ctx_per_seq
        params.n_batch = batch_size
        params.n_ubatch = min(batch_size, 512)
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
        params.kv_unified = False  # each slot attends only over its own cells: cheaper, exact
        params.no_perf = True
        ctx = lc.llama_init_from_model(model.handle, params)
        if not ctx:
            raise LlamaError("llama.cpp could not create a context")
        self._ctx = ctx
        self.model = model
        self.n_seq = n_seq
        self.ctx_per_seq = int(lc.llama_n_ctx_seq(ctx))
        self.batch_size = batch_size
        self.ubatch_size = int(params.n_ubatch)
        self._memory = lc.llama_get_memory(ctx)
        self._batch = lc.llama_batch_init(batch_size, 0, 1)

    @property
    def handle(self) -> Any:
        return self._ctx

    def set_threads(self, threads: int) -> None:
        """Threads of the next decodes (llama.cpp reads them at each one)."""
        lc.llama_set_n_threads(self._ctx, threads, threads)

    def close(self) -> None:
        if self._ctx:
            lc.llama_batch_free(self._batch)
            lc.llama_free(self._ctx)
            self._ctx = None

    def warm_up(self) -> None:
        """Decode one real token in slot 0 and check its logits, then forget it.

        Runs at load on the engine thread (LLMEngine.start), before the model is reported
        ready: a library built for features this CPU lacks, or a broken file, fails here with
        the model's name in the log instead of at a user's first request.
        """
        model = self.model
        token = model.probe_token
        self.decode([token], [0], [0], [True])
        try:
            if not np.isfinite(self.logits(0)).all():
                raise LlamaError(f"warm-up decode of {model.path.name} gave non-finite logits")
        finally:
            self.forget(0)

    def time_decode(self, rows: int, repeats: int = 3) -> float:
        """Seconds of one decode of `rows` rows (the best of `repeats`), in slot 0, which is
        left empty: load-time measurements, before any sequence holds a slot."""
        token = self.model.probe_token
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            self.decode([token] * rows, list(range(rows)), [0] * rows, [True] * rows)
            best = min(best, time.perf_counter() - started)
            self.forget(0)
        return best

    def forget(self, seq_id: int, from_pos: int = 0) -> None:
        """Drop a slot's KV cells from `from_pos` on (keeping the reusable prefix)."""
        lc.llama_memory_seq_rm(self._memory, seq_id, from_pos, -1)

    def copy_slot(self, src: int, dst: int) -> None:
        """Make slot `dst` hold what slot `src` holds. Slots are separate KV streams, which
        llama.cpp copies whole, buffer to buffer, at the start of the next decode."""
        lc.llama_memory_seq_rm(self._memory, dst, -1, -1)
        lc.llama_memory_seq_cp(self._memory, src, dst, -1, -1)

    def save_state(self, seq_id: int) -> bytearray:
        """A copy of one slot's KV state (llama.cpp's per-sequence state format)."""
        size = int(lc.llama_state_seq_get_size(self._ctx, seq_id))
        state = bytearray(size)
        buf = (ctypes.c_uint8 * size).from_buffer(state)
        written = int(lc.llama_state_seq_get_data(self._ctx, buf, size, seq_id))
        if written != size:
            raise LlamaError(f"saving slot {seq_id}'s state wrote {written} of {size} bytes")
        return state

    def load_state(self, seq_id: int, state: bytes | bytearray) -> None:
        """Replace one slot's KV with a state `save_state` copied (from any slot)."""
        self.forget(seq_id)
        size = len(state)
        buf = (ctypes.c_uint8 * size).from_buffer_copy(state) if isinstance(state, bytes) \
            else (ctypes.c_uint8 * size).from_buffer(state)
        if int(lc.llama_state_seq_set_data(self._ctx, buf, size, seq_id)) == 0:
            self.forget(seq_id)
            raise LlamaError(f"restoring a saved state into slot {seq_id} failed")

    def decode(self, tokens: list[int], positions: list[int], seq_ids: list[int],
               want_logits: list[bool]) -> None:
        """Run ONE llama_decode over rows from many sequences."""
        n = len(tokens)
        if n > self.batch_size:
            raise LlamaError(f"batch of {n} tokens exceeds {self.batch_size}")
        batch = self._batch
        batch.n_tokens = n
        for i in range(n):
            batch.token[i] = tokens[i]
            batch.pos[i] = positions[i]
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_ids[i]
            batch.logits[i] = want_logits[i]
        rc = lc.llama_decode(self._ctx, batch)
        if rc != 0:
            raise LlamaError(f"llama_decode failed with code {rc}")

    def decode_embeddings(self, embd: npt.NDArray[np.float32], pos: npt.NDArray[np.int32],
                          seq_id: int, non_causal: bool = False) -> None:
        """Evaluate embedding rows (an image's) into one sequence; no logits are kept.

        `pos` is (n_pos_per_embd, n): one row, or the four M-RoPE sections, section-major as
        llama.cpp reads them.
        """
        n = int(embd.shape[0])
        if n > self.batch_size:
            raise LlamaError(f"batch of {n} embeddings exceeds {self.batch_size}")
        rows = np.ascontiguousarray(embd, dtype=np.float32)
        positions = np.ascontiguousarray(pos, dtype=np.int32).reshape(-1)
        n_seq_id = np.ones(n, dtype=np.int32)
        seq = (lc.llama_seq_id * 1)(seq_id)
        seq_ptrs = (ctypes.POINTER(lc.llama_seq_id) * n)(
            *([ctypes.cast(seq, ctypes.POINTER(lc.llama_seq_id))] * n))
        logits = np.zeros(n, dtype=np.int8)
        batch = lc.llama_batch()
        batch.n_tokens = n
        batch.embd = rows.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        batch.pos = positions.ctypes.data_as(ctypes.POINTER(lc.llama_pos))
        batch.n_seq_id = n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.seq_id = seq_ptrs
        batch.logits = logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        if non_causal:
            lc.llama_set_causal_attn(self._ctx, False)
        try:
            rc = lc.llama_decode(self._ctx, batch)
        finally:
            if non_causal:
                lc.llama_set_causal_attn(self._ctx, True)
        if rc != 0:
            raise LlamaError(f"llama_decode of image embeddings failed with code {rc}")

    def logits(self, batch_index: int) -> npt.NDArray[np.float32]:
        ptr = lc.llama_get_logits_ith(self._ctx, batch_index)
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,))


def _text(read: Callable[[Any, int], int]) -> str | None:
    """A string llama.cpp writes into a buffer (`read(buf, size)` returns its length, or < 0
    when there is none), with a second try when the first buffer was too small."""
    size = 256
    for _ in range(2):
        buf = ctypes.create_string_buffer(size)
        n = read(buf, size)
        if n < 0:
            return None
        if n < size:
            return buf.value.decode("utf-8", errors="replace")
        size = n + 1
    return None
