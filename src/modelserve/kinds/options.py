"""Each runtime's `options:` (the YAML a model spec carries), by kind. Plain pydantic models:
config parsing reads them without importing any runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
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

    @field_validator("mmproj")
    @classmethod
    def _mmproj_string_is_path(cls, value: Any) -> Any:
        return PathSource(path=value) if isinstance(value, str) else value

    def resolve_mmproj(self) -> Path | None:
        source = self.mmproj
        assert not isinstance(source, str)
        return None if source is None else source.resolve()


class EmbeddingOptions(BaseModel):
    """Runtime options of an embeddings model (onnx or sentence-transformers)."""

    model_config = ConfigDict(extra="forbid")
    threads: int | None = Field(None, ge=1, description="default: all cores")
    max_batch_tokens: int | None = Field(
        None, ge=64, description="padded tokens in one forward pass; default: 512 on onnx "
        "(long inputs run faster in small passes), 8192 on sentence-transformers")
    spinning: bool = Field(False, description="onnx: intra-op threads spin between ops "
                           "(faster passes; takes CPU from the API process meanwhile)")
    max_batch_wait_ms: float = Field(2.0, ge=0, le=1000, description="wait to fill a batch")
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
