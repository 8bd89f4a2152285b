"""llama.cpp's built-in chat templates: their names, and which one fits a GGUF that has none.

Pure data and logic (no llama.cpp import), so config validation can check a template name.
"""

from __future__ import annotations

from collections.abc import Callable

# The names llama.cpp's llama_chat_apply_template accepts (LLM_CHAT_TEMPLATES in
# llama-chat.cpp, llama-cpp-python 0.3.36).
BUILTIN_TEMPLATES: frozenset[str] = frozenset({
    "chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1",
    "mistral-v3", "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "phi3", "phi4",
    "falcon3", "zephyr", "monarch", "gemma", "orion", "openchat", "vicuna", "vicuna-orca",
    "deepseek", "deepseek2", "deepseek3", "deepseek-ocr", "command-r", "llama3", "chatglm3",
    "chatglm4", "glmedge", "minicpm", "exaone3", "exaone4", "exaone-moe", "rwkv-world",
    "granite", "granite-4.0", "granite-4.1", "gigachat", "megrez", "yandex", "bailing",
    "bailing-think", "bailing2", "llama4", "smolvlm", "hunyuan-moe", "gpt-oss",
    "hunyuan-dense", "hunyuan-vl", "kimi-k2", "seed_oss", "grok-2", "pangu-embedded",
    "solar-open",
})

# A template's own control token: when the vocabulary lacks it, the template cannot be the
# model's (a llama-architecture GGUF may be Llama 3, Llama 2, Mistral or SmolLM). Templates
# absent here are plain text and fit any vocabulary.
_MARKERS: dict[str, str] = {
    "chatml": "<|im_start|>",
    "gemma": "<start_of_turn>",
    "llama3": "<|start_header_id|>",
    "llama4": "<|header_start|>",
    "mistral-v7": "[SYSTEM_PROMPT]",
    "mistral-v3": "[INST]",
    "phi3": "<|end|>",
    "command-r": "<|START_OF_TURN_TOKEN|>",
    "granite": "<|start_of_role|>",
    "exaone3": "[|endofturn|]",
    "exaone4": "[|endofturn|]",
    "gpt-oss": "<|start|>",
    "deepseek3": "<\uff5cUser\uff5c>",  # DeepSeek writes it with full-width bars
}

# GGUF `general.architecture` -> built-in templates to try, in order; the first whose marker
# is in the vocabulary wins. Architectures shared by several chat formats list each.
_BY_ARCHITECTURE: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("gemma", "gemma2", "gemma3", "gemma3n"), ("gemma",)),
    "llama": ("llama3", "chatml", "mistral-v7", "mistral-v3", "llama2"),
    "llama4": ("llama4",),
    **dict.fromkeys(("qwen", "qwen2", "qwen2moe", "qwen2vl", "qwen3", "qwen3moe", "smollm3"),
                    ("chatml",)),
    **dict.fromkeys(("mistral3", "mistral4"), ("mistral-v7", "mistral-v3")),
    **dict.fromkeys(("phi3", "phimoe"), ("phi3", "chatml")),
    **dict.fromkeys(("command-r", "cohere2"), ("command-r",)),
    **dict.fromkeys(("granite", "granitemoe", "granitehybrid"), ("granite",)),
    "exaone": ("exaone3",),
    "exaone4": ("exaone4",),
    "gpt-oss": ("gpt-oss",),
    "deepseek2": ("deepseek3", "deepseek2"),
    "minicpm": ("minicpm",),
    "chatglm": ("chatglm3",),
    "glm4": ("chatglm4",),
}

FALLBACK = "chatml"


def is_builtin_name(value: str) -> bool:
    return value.strip() in BUILTIN_TEMPLATES


def looks_like_name(value: str) -> bool:
    """A bare word (no jinja, no spaces): meant as a template name, not template source."""
    text = value.strip()
    return bool(text) and not any(c.isspace() or c in "{}%" for c in text)


def template_for(architecture: str | None, has_token: Callable[[str], bool]) -> str:
    """The built-in template for a GGUF without one of its own; `has_token(text)`: whether
    the vocabulary holds `text` as a single token."""
    for name in _BY_ARCHITECTURE.get(architecture or "", ()):
        marker = _MARKERS.get(name)
        if marker is None or has_token(marker):
            return name
    # An architecture we cannot place: its vocabulary may still name the format.
    for name in ("chatml", "gemma", "llama3"):
        if has_token(_MARKERS[name]):
            return name
    return FALLBACK
