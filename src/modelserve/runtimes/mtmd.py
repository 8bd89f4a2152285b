"""A vision projector (mmproj GGUF) on llama.cpp's multimodal library, mtmd (ctypes).

Turns a rendered prompt with media markers plus its images into what the engine evaluates:
text tokens, and per image a span of embeddings (encoded here, off the engine thread).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache
from llama_cpp import _logger as lc_logger
from llama_cpp import mtmd_cpp as mt

from modelserve.engine.sequence import ImageSpan, MultimodalPrompt
from modelserve.failures import StateLost
from modelserve.images.decode import DecodedImage
from modelserve.runtimes.llama_cpp import LlamaError, LlamaModel

# mtmd logs every preprocessing step at info level; route it through llama-cpp-python's
# logger, which this server keeps at warnings and errors.
mt.mtmd_helper_log_set(lc_logger.llama_log_callback, ctypes.c_void_p(0))

# Pseudo-token ids of image spans are negative: no vocabulary id can equal one.
_PSEUDO_BITS = 62
# Encoded images kept in the worker (an image is 0.1-3 MB of embeddings for common models).
ENCODED_CACHE_BYTES = 256 * 1024 * 1024
Embeddings = npt.NDArray[np.float32]


class PromptError(ValueError):
    """The prompt and its images do not fit together (a client error)."""


def pseudo_token(image_id: str, chunk: int) -> int:
    """The id standing for image chunk `chunk` of the image `image_id` in a token list."""
    digest = hashlib.blake2b(f"{image_id}:{chunk}".encode(), digest_size=8).digest()
    return -1 - (int.from_bytes(digest, "little") >> (64 - _PSEUDO_BITS))


class MtmdProjector:
    """One mtmd context: the projector bound to its text model."""

    def __init__(self, path: Path, model: LlamaModel, threads: int | None,
                 use_gpu: bool) -> None:
        params = mt.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.print_timings = False
        params.n_threads = threads or os.cpu_count() or 1
        ctx = mt.mtmd_init_from_file(str(path).encode(), model.handle, params)
        if not ctx:
            raise LlamaError(f"llama.cpp could not load the projector {path} for this model")
        self._ctx: Any = ctx
        self._model = model
        if not mt.mtmd_support_vision(ctx):
            self.close()
            raise LlamaError(f"{path} has no vision encoder")
        self.path = path
        self.marker: str = mt.mtmd_default_marker().decode()
        self.mrope = bool(mt.mtmd_decode_use_mrope(ctx))
        # mtmd's encoder keeps per-context state (its output buffer): one encode at a time.
        self._lock = threading.Lock()
        # Encoded images by (content hash, chunk): a sequence takes its spans' embeddings
        # from here (they never cross the worker's pipe), and a later request showing the
        # same image (the next turn of a conversation) is not encoded again.
        self._cache_lock = threading.Lock()  # apart: taking embeddings never waits on an encode
        self._encoded: LRUCache[tuple[str, int], Embeddings] = LRUCache(
            ENCODED_CACHE_BYTES, getsizeof=lambda embd: int(embd.nbytes))
        self.encodes = 0  # images (chunks) encoded, cache hits not counted

    def attach(self, spans: list[ImageSpan]) -> None:
        """Give spans that crossed the pipe their embeddings back (raises StateLost if one
        was evicted meanwhile: more than ENCODED_CACHE_BYTES of images in between)."""
        with self._cache_lock:
            for span in spans:
                if span.embd is None:
                    digest, _, ordinal = span.image_id.rpartition(":")
                    embd = self._encoded.get((digest, int(ordinal or 0)))
                    if embd is None:
                        raise StateLost("the image's encoding was evicted before its "
                                        "request started")
                    span.embd = embd

    def close(self) -> None:
        if self._ctx:
            mt.mtmd_free(self._ctx)
            self._ctx = None

    def prepare(self, text: str, images: list[DecodedImage], add_special: bool
                ) -> MultimodalPrompt:
        """Tokenize around the markers and encode every image (seconds for big models)."""
        with self._lock:
            chunks = self._tokenize(text, images, add_special)
            try:
                return self._evaluate(chunks)
            finally:
                mt.mtmd_input_chunks_free(chunks)

    def _tokenize(self, text: str, images: list[DecodedImage], add_special: bool) -> Any:
        # A template may drop a message (and its marker): mtmd would only say "error".
        if text.count(self.marker) != len(images):
            raise PromptError(f"the rendered prompt has {text.count(self.marker)} image "
                              f"place(s) for the {len(images)} image(s) sent")
        bitmaps = []
        keep = []
        try:
            for image in images:
                pixels = (ctypes.c_uint8 * len(image.rgb)).from_buffer_copy(image.rgb)
                keep.append(pixels)
                bitmap = mt.mtmd_bitmap_init(image.width, image.height, pixels)
                if not bitmap:
                    raise LlamaError("mtmd could not take the image")
                bitmaps.append(bitmap)
                mt.mtmd_bitmap_set_id(bitmap, image.digest.encode())
            data = text.encode()
            inp = mt.mtmd_input_text()
            inp.text, inp.text_len = data, len(data)
            inp.add_special, inp.parse_special = add_special, True
            array = (mt.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            chunks = mt.mtmd_input_chunks_init()
            rc = mt.mtmd_tokenize(self._ctx, chunks, ctypes.byref(inp), array, len(bitmaps))
            if rc != 0:
                mt.mtmd_input_chunks_free(chunks)
                raise PromptError("the images could not be preprocessed for this model")
            return chunks
        finally:
            for bitmap in bitmaps:
                mt.mtmd_bitmap_free(bitmap)

    def _evaluate(self, chunks: Any) -> MultimodalPrompt:
        prompt = MultimodalPrompt(tokens=[])
        pos = 0  # KV position of the next chunk (image spans may advance it by n_pos)
        seen: dict[str, int] = {}
        n_embd = self._model.n_embd_inp
        for i in range(mt.mtmd_input_chunks_size(chunks)):
            chunk = mt.mtmd_input_chunks_get(chunks, i)
            kind = mt.mtmd_input_chunk_get_type(chunk)
            if kind == mt.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                tokens = mt.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                prompt.tokens += tokens[: n.value]
                pos += n.value
                continue
            if kind != mt.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                raise PromptError("only images are supported as media")
            n_tokens = int(mt.mtmd_input_chunk_get_n_tokens(chunk))
            image_id = (mt.mtmd_input_chunk_get_id(chunk) or b"").decode()
            ordinal = seen[image_id] = seen.get(image_id, -1) + 1
            with self._cache_lock:
                embd = self._encoded.get((image_id, ordinal))
            if embd is None or embd.shape[0] != n_tokens:
                if mt.mtmd_encode_chunk(self._ctx, chunk) != 0:
                    raise LlamaError("the projector failed to encode an image")
                out = mt.mtmd_get_output_embd(self._ctx)
                embd = np.ctypeslib.as_array(out, shape=(n_tokens, n_embd)).copy()
                self.encodes += 1
                with self._cache_lock:
                    self._encoded[(image_id, ordinal)] = embd
            span = ImageSpan(start=len(prompt.tokens), n_tokens=n_tokens, embd=embd,
                             image_id=f"{image_id}:{ordinal}",
                             pos=self._positions(chunk, pos, n_tokens),
                             n_pos=int(mt.mtmd_input_chunk_get_n_pos(chunk)),
                             non_causal=bool(mt.mtmd_decode_use_non_causal(self._ctx, chunk)))
            prompt.images.append(span)
            prompt.tokens += [pseudo_token(image_id, ordinal)] * n_tokens
            pos += span.n_pos
        if not prompt.tokens or (prompt.images and prompt.images[-1].end == len(prompt.tokens)):
            raise PromptError("the prompt must end with text after its last image")
        return prompt

    def _positions(self, chunk: Any, pos_0: int, n_tokens: int) -> np.ndarray[Any, Any]:
        if not self.mrope:
            return np.arange(pos_0, pos_0 + n_tokens, dtype=np.int32).reshape(1, n_tokens)
        image = mt.mtmd_input_chunk_get_tokens_image(chunk)
        rel = (mt.mtmd_decoder_pos * n_tokens)()
        mt.mtmd_helper_image_get_decoder_pos(image, pos_0, rel)
        # M-RoPE sections, as llama.cpp's helper lays them out: t, y, x, z.
        return np.array([[p.t for p in rel], [p.y for p in rel], [p.x for p in rel],
                         [p.z for p in rel]], dtype=np.int32)
