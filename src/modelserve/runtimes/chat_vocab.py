"""A chat model's text side: tokenizer, chat template and token pieces.

Both the runtime in the worker process and its front end in the API process are built on
this (the front end over a vocabulary-only load of the same GGUF), so a prompt tokenizes the
same on either side of the process boundary.
"""

from __future__ import annotations

import logging
from typing import Any

from modelserve.kinds.options import LlamaCppOptions
from modelserve.runtimes.builtin_templates import is_builtin_name, template_for
from modelserve.runtimes.chat_template import ChatTemplate
from modelserve.runtimes.llama_cpp import LlamaModel

logger = logging.getLogger(__name__)


class ChatVocabulary:
    model: LlamaModel
    template: ChatTemplate

    def _init_text(self, model: LlamaModel, opts: LlamaCppOptions, announce: bool = True
                   ) -> None:
        """`announce`: log which template is in use (the worker does; its front end, which
        makes the same choice from the same file, need not say it twice)."""
        self.model = model
        bos = model.token_text(model.bos_token_id) if model.bos_token_id >= 0 else ""
        eos = model.token_text(model.eos_token_id) if model.eos_token_id >= 0 else ""
        self._bos_text = bos
        configured = opts.chat_template
        source = None if configured and is_builtin_name(configured) else (
            configured or model.chat_template())
        # The built-in serves a configured name, a GGUF without a template, or a template
        # that does not compile: then the model's architecture picks it, not ChatML for all.
        if configured and source is None:
            name = configured.strip()
        else:
            name = template_for(model.architecture, model.has_token)
        self.template = ChatTemplate(source, bos, eos,
                                     lambda pairs: model.apply_builtin_template(name, pairs),
                                     builtin_name=name)
        if announce:
            self._announce(configured, source)

    def _announce(self, configured: str | None, source: str | None) -> None:
        file, name = self.model.path.name, self.template.name
        if configured:
            logger.info("%s: chat template from the config (%s)", file, name)
        elif source is None:
            logger.warning("%s has no chat template: using llama.cpp's %r template for its "
                           "architecture %r", file, name, self.model.architecture)
        else:
            logger.info("%s: chat template from the GGUF (%s)", file, name)
        if source is not None and not self.template.supports_tools:  # built-ins never do
            logger.info("%s: the chat template does not render tools; tool definitions go "
                        "into a system message", file)

    @property
    def n_vocab(self) -> int:
        return self.model.n_vocab

    def render_chat(self, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None,
                    variables: dict[str, Any] | None = None) -> list[int]:
        """Chat messages (and tools, for a template that renders them; extra template
        `variables`) -> prompt tokens, through the model's template."""
        text = self.template.render(messages, tools=tools, variables=variables)
        return self.model.tokenize(text, add_special=self._add_bos(text), parse_special=True)

    def _add_bos(self, text: str) -> bool:
        return self.model.add_bos and not (self._bos_text and text.startswith(self._bos_text))

    def tokenize(self, text: str, special: bool = False, add_special: bool = True
                 ) -> list[int]:
        """Plain completion prompts: user text, so special-token syntax is not parsed unless
        `special` (a prompt the client templated itself, Ollama's `raw`). Without
        `add_special`: text as the model's output holds it (no BOS)."""
        return self.model.tokenize(text, add_special=add_special, parse_special=special)

    def token_text(self, token: int) -> str:
        return self.model.token_text(token)

    def detokenize(self, tokens: list[int]) -> str:
        data = b"".join(self.model.token_bytes(t) for t in tokens)
        return data.decode("utf-8", errors="replace")

    def token_bytes(self, token: int) -> bytes:
        return self.model.token_bytes(token, special=True)
