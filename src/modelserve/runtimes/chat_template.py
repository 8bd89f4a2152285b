"""Render a GGUF's own chat template (untrusted input) in jinja2's sandbox, or one of
llama.cpp's built-in templates by name."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

logger = logging.getLogger(__name__)


class ChatTemplateError(ValueError):
    """The conversation cannot be rendered (the template rejected it)."""


def _raise_exception(message: str) -> NoReturn:
    raise ChatTemplateError(message)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


class ChatTemplate:
    """A jinja chat template, or llama.cpp's built-in one when the model has none usable.

    `builtin` renders with llama.cpp's template called `builtin_name`.
    """

    def __init__(self, source: str | None, bos_token: str, eos_token: str,
                 builtin: Callable[[list[tuple[str, str]]], str | None],
                 builtin_name: str = "chatml") -> None:
        self.builtin_name = builtin_name
        self._bos = bos_token
        self._eos = eos_token
        self._builtin = builtin
        self._template = None
        if source:
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.filters["tojson"] = _tojson
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            try:
                self._template = env.from_string(source)
            except TemplateError as exc:
                logger.warning("model chat template does not compile (%s); using llama.cpp's "
                               "%r template", exc, builtin_name)
        self.typed_content = False  # decided below, by rendering plain content first
        self.typed_content = self._template is not None and self._needs_typed_content()
        self.supports_tools = self._template is not None and self._renders_tools()

    @property
    def uses_model_template(self) -> bool:
        return self._template is not None

    @property
    def name(self) -> str:
        """What renders prompts: "jinja", or the llama.cpp built-in's name."""
        return "jinja" if self._template is not None else self.builtin_name

    def _needs_typed_content(self) -> bool:
        """Some templates (SmolVLM's, Idefics') only read content as a list of typed parts
        and drop a plain string: find out once, as llama.cpp's template engine does."""
        needle = "\x01needle\x01"
        try:
            plain = self.render([{"role": "user", "content": needle}])
            typed = self.render([{"role": "user",
                                  "content": [{"type": "text", "text": needle}]}])
        except ChatTemplateError:
            return False
        return needle not in plain and needle in typed

    def _renders_tools(self) -> bool:
        """Whether the template shows the model the `tools` it is given (Qwen's, Hermes'
        do; SmolLM2's ignores them): found out once by rendering a tool with a marked name."""
        needle = "needle_5f3a"
        tool = {"type": "function", "function": {"name": needle, "description": "",
                                                 "parameters": {"type": "object"}}}
        try:
            return needle in self.render([{"role": "user", "content": "hi"}], tools=[tool])
        except ChatTemplateError:
            return False

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None,
               variables: dict[str, Any] | None = None) -> str:
        """`tools`: function tools as OpenAI sends them, for templates that render them;
        `variables`: more names for the template (`enable_thinking`, `reasoning_effort`), which
        the built-in templates have no use for. The server's own names win over them."""
        if self._template is None:
            return self._render_builtin(messages)
        if self.typed_content:
            messages = [{**m, "content": [{"type": "text", "text": m["content"]}]}
                        if isinstance(m.get("content"), str) else m for m in messages]
        try:
            return self._template.render({
                **(variables or {}), "messages": messages,
                "add_generation_prompt": add_generation_prompt, "bos_token": self._bos,
                "eos_token": self._eos, "tools": tools,
            })
        except ChatTemplateError:
            raise
        except (TemplateError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise ChatTemplateError(f"the model's chat template rejected the messages: {exc}") \
                from exc

    def _render_builtin(self, messages: list[dict[str, Any]]) -> str:
        pairs = [(str(m["role"]), str(m.get("content") or "")) for m in messages]
        text = self._builtin(pairs)
        if text is None:
            raise ChatTemplateError("no chat template available for this model")
        return text
