"""Each runtime's `options:` (the YAML a model spec carries), by kind. Plain pydantic models:
config parsing reads them without importing any runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from modelserve.sources import PackageSource, PathSource


def one_of(names: list[str]) -> str:
    """Names the way pydantic's Literal errors do: 'a', 'b' or 'c'."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


class LlamaCppOptions(BaseModel):
    """Runtime options of a llama.cpp chat model."""

    model_config = ConfigDict(extra="forbid")
    context_size: int = Field(2048, ge=64, description="tokens per sequence")
    parallel: int = Field(8, ge=1, le=256, description="sequences decoded together")
    threads: int | None = Field(None, ge=1, description="default: all cores")
    batch_size: int = Field(512, ge=16, description="max tokens in one llama_decode")
    max_waiting: int = Field(64, ge=0, description="queued requests before 429")
    gpu_layers: int = Field(0, description="layers offloaded to a GPU; -1 = all")
    prefill_budget: int | None = Field(
        None, ge=1, description="prompt tokens computed per step while other sequences "
        "stream (smaller: smoother streams, slower first tokens); default: batch_size")
    speculation: Literal["auto", "ngram", "draft_model", "prediction", "off"] = Field(
        "auto", description="speculative decoding of greedy requests: `ngram` drafts from "
        "prompt lookup and from a request's `prediction`; `prediction` only from that; "
        "`draft_model` from the draft model always; `auto` (default) as `ngram` where a "
        "drafted row measures cheap at load (a GPU, a big model), else as `prediction`, and "
        "from the draft model where its guesses measure cheap enough to pay; `off`")
    draft_max: int = Field(32, ge=2, le=64, description="most tokens drafted per step (a "
                           "draft starts at 4 and doubles while accepted)")
    draft_model: PackageSource | PathSource | str | None = Field(
        None, description="a small GGUF sharing this model's tokenizer (checked at load) that "
        "drafts every greedy sequence's next tokens, verified in the batch: the output is "
        "unchanged, faster where the draft agrees; used as `speculation` says, before prompt "
        "lookup")
    draft_streams: int | None = Field(
        None, ge=1, description="speculate only while at most this many sequences decode; "
        "default: as far as drafts can pay, from what a drafted row measures at load against "
        "a step of that many rows (a GPU: any number; SmolLM2 on 2 CPU cores: up to ~5)")
    host_cache_mb: int = Field(
        1024, ge=0, description="host memory (MiB) keeping the KV of prompts pushed out of "
        "their slot, restored when one comes back; 0: off")
    host_cache_dir: str | None = Field(
        None, description="folder the prompt store also writes its entries to, so they "
        "outlive a reload or a restart of the same model file (never restored into another)")
    host_cache_disk_mb: int = Field(8192, ge=1, description="disk the spill folder may use")
    prompt_cache_scope: Literal["shared", "per_key"] = Field(
        "shared", description="per_key: a prompt's KV (in the slots, the prompt store and its "
        "spill) is reused only for requests made with the same API key, so tenants never "
        "share it; shared: any request with the same prefix reuses it")
    chat_template: str | None = Field(
        None, description="override the GGUF's template: jinja source, or the name of one of "
        "llama.cpp's built-in templates (gemma, llama3, mistral-v7, chatml, ...)")
    mmproj: PackageSource | PathSource | str | None = Field(
        None, description="vision projector GGUF: makes this a vision-language model")

    @field_validator("chat_template")
    @classmethod
    def _template_name_is_known(cls, value: str | None) -> str | None:
        from modelserve.runtimes.builtin_templates import (
            BUILTIN_TEMPLATES,
            is_builtin_name,
            looks_like_name,
        )

        # A bare word that names no built-in is a typo, not a template that prints itself.
        if value is not None and looks_like_name(value) and not is_builtin_name(value):
            raise PydanticCustomError(
                "literal_error", "Input should be jinja source or one of {expected}",
                {"expected": one_of(sorted(BUILTIN_TEMPLATES))})
        return value

    @field_validator("speculation", mode="before")
    @classmethod
    def _yaml_off_is_off(cls, value: Any) -> Any:
        # YAML reads a bare `off` as false (and `on` as true).
        return {False: "off", True: "auto"}.get(value, value) if isinstance(value, bool) \
            else value

    @field_validator("mmproj", "draft_model")
    @classmethod
    def _string_is_path(cls, value: Any) -> Any:
        return PathSource(path=value) if isinstance(value, str) else value

    def resolve_mmproj(self) -> Path | None:
        source = self.mmproj
        assert not isinstance(source, str)
        return None if source is None else source.resolve()

    @model_validator(mode="after")
    def _draft_model_mode_has_a_model(self) -> LlamaCppOptions:
        if self.speculation == "draft_model" and self.draft_model is None:
            raise PydanticCustomError("missing", "speculation: draft_model needs "
                                      "options.draft_model (a GGUF sharing the tokenizer)")
        return self

    def resolve_draft_model(self) -> Path | None:
        """The draft model's file where speculation may use it."""
        source = self.draft_model
        assert not isinstance(source, str)
        if source is None or self.speculation in ("prediction", "off"):
            return None
        return source.resolve()


class EmbeddingOptions(BaseModel):
    """Runtime options of an embeddings model (onnx or sentence-transformers)."""

    model_config = ConfigDict(extra="forbid")
    threads: int | None = Field(None, ge=1, description="default: all cores")
    max_batch_tokens: int | None = Field(
        None, ge=64, description="padded tokens in one forward pass; default: 512 on onnx "
        "(long inputs run faster in small passes), 8192 on sentence-transformers")
    spinning: bool = Field(False, description="onnx: intra-op threads spin between ops "
                           "(faster passes; takes CPU from the API process meanwhile)")
    max_batch_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="wait for the inputs in flight at the last pass")
    max_inputs: int = Field(2048, ge=1, description="inputs per request (OpenAI: 2048)")
    max_waiting_inputs: int = Field(
        16384, ge=1, description="inputs sent to the model and not yet embedded before 429 "
        "(a request larger than this still runs alone)")
    max_tokens: int | None = Field(None, ge=1, description="per input; default: the model's")
    matryoshka: bool = Field(False, description="allow `dimensions` (truncate + renormalize)")
    precision: Literal["auto", "fp32"] = Field(
        "auto", description="auto: under `runtime: auto`, on CPUs with bf16 units, passes of "
        "128+ padded tokens run on torch in bf16 (cosine >= 0.9999 to fp32); fp32: exact")


class DiffusionOptions(BaseModel):
    """Runtime options of a diffusers image model (a Stable Diffusion style directory)."""

    model_config = ConfigDict(extra="forbid")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda if present")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float16 on cuda, float32 on cpu")
    scheduler: str | None = Field(None, description="diffusers scheduler class to swap in")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: all")
    default_steps: int = Field(20, ge=1, description="num_inference_steps when not sent")
    max_steps: int = Field(100, ge=1, description="largest num_inference_steps allowed")
    default_guidance_scale: float | None = Field(
        None, ge=0, description="when not sent; None: the pipeline's own (0 for *-Turbo)")
    default_size: str | None = Field(None, pattern=r"^\d+x\d+$",
                                     description="WxH; default: the model's native size")
    min_width: int = Field(64, ge=8)
    min_height: int = Field(64, ge=8)
    max_width: int = Field(1024, ge=8)
    max_height: int = Field(1024, ge=8)
    max_n: int = Field(4, ge=1, le=64, description="images per request")
    max_waiting: int = Field(16, ge=0, description="queued requests before 429")
    max_input_pixels: int = Field(4096 * 4096, ge=64, description="largest edit upload")
    default_response_format: Literal["url", "b64_json"] = "url"
    url_ttl_seconds: float = Field(3600, gt=0, description="lifetime of a `url` image")
    url_storage: str = Field("memory", description="`memory` or a directory for url images")
    url_memory_bytes: int = Field(256 * 1024 * 1024, ge=1024,
                                  description="memory store cap; oldest images go first")


class WhisperOptions(BaseModel):
    """Runtime options of a speech-to-text model on faster-whisper (a CTranslate2 directory)."""

    model_config = ConfigDict(extra="forbid")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda if present")
    compute_type: str = Field("auto", description="CTranslate2 compute type: auto (int8 on "
                              "CPU, float16 on CUDA), default (the model's own), int8, "
                              "float16, float32, ...")
    threads: int | None = Field(None, ge=1, description="CPU threads per transcription; "
                                "default: all cores")
    concurrency: int = Field(1, ge=1, le=16, description="transcriptions run at once")
    max_waiting: int = Field(16, ge=0, description="queued transcriptions before 429")
    beam_size: int = Field(5, ge=1, le=16, description="beam search width (1: greedy)")
    max_file_bytes: int = Field(25 * 1024 * 1024, ge=1024,
                                description="largest upload (OpenAI: 25 MB); the server's "
                                "`max_request_bytes` caps it too")
    max_duration_seconds: float = Field(3600, gt=0, description="longest audio accepted")
    vad_filter: bool = Field(False, description="drop silence with Silero VAD before "
                             "decoding, for every request (a request asks for it with "
                             "`chunking_strategy`)")


class PiperOptions(BaseModel):
    """Runtime options of a text-to-speech Piper voice (an .onnx file and its .onnx.json)."""

    model_config = ConfigDict(extra="forbid")
    config: PackageSource | PathSource | str | None = Field(
        None, description="the voice's .onnx.json; default: the source's path + '.json'")
    threads: int | None = Field(None, ge=1, description="onnxruntime threads; default: all")
    concurrency: int = Field(1, ge=1, le=16, description="syntheses run at once")
    max_waiting: int = Field(16, ge=0, description="queued requests before 429")
    max_input_chars: int = Field(4096, ge=1, description="longest `input` (OpenAI: 4096)")
    voices: dict[str, str | int] = Field(
        default_factory=dict, description="voice name -> speaker (name or id) of this "
        "voice file; OpenAI's voice names (alloy, echo, ...) not listed here speak with "
        "the default speaker")

    @field_validator("config")
    @classmethod
    def _config_string_is_path(cls, value: Any) -> Any:
        return PathSource(path=value) if isinstance(value, str) else value


class CrossEncoderOptions(BaseModel):
    """Runtime options of a reranker that scores (query, document) pairs together: a
    sentence-transformers CrossEncoder directory (a Hugging Face sequence classifier)."""

    model_config = ConfigDict(extra="forbid")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: all")
    max_tokens: int | None = Field(None, ge=8, description="per (query, document) pair; "
                                   "longer documents are truncated; default: the model's")
    max_batch_tokens: int = Field(8192, ge=64, description="padded tokens in one pass")
    max_batch_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="wait for the documents in flight at the last pass")
    max_documents: int = Field(4096, ge=1, description="documents per request")
    max_waiting_documents: int = Field(16384, ge=1,
                                       description="documents queued before 429")


class BiEncoderOptions(EmbeddingOptions):
    """Runtime options of a reranker built on an embeddings model: the query and each
    document are embedded apart and scored by cosine similarity. The embeddings options
    apply (the encoder runs on the embeddings runtime's `auto` choice)."""

    max_documents: int = Field(4096, ge=1, description="documents per request")
