import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelserve.kinds.options import LlamaCppOptions
from modelserve.runtimes.builtin_templates import (
    BUILTIN_TEMPLATES,
    is_builtin_name,
    looks_like_name,
    template_for,
)
from modelserve.runtimes.chat_template import ChatTemplate, ChatTemplateError
from modelserve.runtimes.chat_vocab import ChatVocabulary

MSGS = [{"role": "user", "content": "hi"}]


def builtin(pairs: list[tuple[str, str]]) -> str | None:
    return "".join(f"<{r}>{c}" for r, c in pairs) + "<assistant>"


def test_renders_jinja_with_generation_prompt_and_tojson() -> None:
    tpl = ChatTemplate("{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}|"
                       "{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
                       "{{ {'k': 'é'} | tojson }}", "<s>", "</s>", builtin)
    assert tpl.uses_model_template
    assert tpl.render(MSGS) == '<s>user:hi|A:{"k": "é"}'


def test_raise_exception_becomes_user_error() -> None:
    tpl = ChatTemplate("{{ raise_exception('roles must alternate') }}", "", "", builtin)
    with pytest.raises(ChatTemplateError, match="alternate"):
        tpl.render(MSGS)


def test_sandbox_blocks_python_internals() -> None:
    tpl = ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}", "", "", builtin)
    with pytest.raises(ChatTemplateError):
        tpl.render(MSGS)


def test_broken_or_missing_template_falls_back_to_builtin() -> None:
    assert not ChatTemplate("{% for %}", "", "", builtin).uses_model_template
    assert ChatTemplate(None, "", "", builtin).render(MSGS) == "<user>hi<assistant>"
    with pytest.raises(ChatTemplateError):
        ChatTemplate(None, "", "", lambda pairs: None).render(MSGS)


def test_runtime_errors_in_template_are_user_errors() -> None:
    tpl = ChatTemplate("{{ messages[5].content }}", "", "", builtin)
    with pytest.raises(ChatTemplateError):
        tpl.render(MSGS)


SMOLVLM_LIKE = ("<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}: "
                "{% for line in message['content'] %}{% if line['type'] == 'text' %}"
                "{{ line['text'] }}{% elif line['type'] == 'image' %}<image>{% endif %}"
                "{% endfor %}<end_of_utterance>\n{% endfor %}"
                "{% if add_generation_prompt %}Assistant:{% endif %}")


def test_templates_that_read_typed_content_get_text_parts() -> None:
    tpl = ChatTemplate(SMOLVLM_LIKE, "", "", builtin)
    assert tpl.typed_content
    assert tpl.render([{"role": "user", "content": "look: <__media__> here"}]) == \
        "<|im_start|>User: look: <__media__> here<end_of_utterance>\nAssistant:"
    plain = ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}", "", "", builtin)
    assert not plain.typed_content


def vocab(*tokens: str) -> Callable[[str], bool]:
    return lambda text: text in tokens


@pytest.mark.parametrize(("arch", "tokens", "expected"), [
    ("gemma3", ("<start_of_turn>",), "gemma"),
    ("gemma2", ("<start_of_turn>",), "gemma"),
    ("qwen2", ("<|im_start|>",), "chatml"),
    ("phi3", ("<|end|>",), "phi3"),
    ("mistral3", ("[SYSTEM_PROMPT]", "[INST]"), "mistral-v7"),
    ("command-r", ("<|START_OF_TURN_TOKEN|>",), "command-r"),
    # "llama" covers several chat formats: the vocabulary tells them apart.
    ("llama", ("<|start_header_id|>",), "llama3"),
    ("llama", ("<|im_start|>",), "chatml"),
    ("llama", ("[INST]",), "mistral-v3"),
    ("llama", (), "llama2"),
    # An unknown architecture: its vocabulary, else ChatML as before.
    ("newarch", ("<start_of_turn>",), "gemma"),
    (None, (), "chatml"),
    # A known architecture whose vocabulary lacks the format's tokens is not forced into it.
    ("gemma3", ("<|im_start|>",), "chatml"),
])
def test_template_for_architecture(arch: str | None, tokens: tuple[str, ...],
                                   expected: str) -> None:
    assert template_for(arch, vocab(*tokens)) == expected
    assert expected in BUILTIN_TEMPLATES


def test_builtin_names_and_template_source_are_told_apart() -> None:
    assert is_builtin_name("gemma") and is_builtin_name(" mistral-v7\n")
    assert not is_builtin_name("{{ messages }}")
    assert looks_like_name("gemmma") and not looks_like_name("{% for m in messages %}")
    assert not looks_like_name("hello there")


def test_config_chat_template_takes_a_builtin_name_or_jinja() -> None:
    assert LlamaCppOptions(chat_template="llama3").chat_template == "llama3"
    jinja = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert LlamaCppOptions(chat_template=jinja).chat_template == jinja
    with pytest.raises(ValidationError, match="'gemma'"):
        LlamaCppOptions(chat_template="gemmma")


def test_builtin_template_reports_its_name() -> None:
    assert ChatTemplate(None, "", "", builtin, builtin_name="gemma").name == "gemma"
    assert ChatTemplate("{% for %}", "", "", builtin, builtin_name="phi3").name == "phi3"
    assert ChatTemplate("x", "", "", builtin).name == "jinja"


class FakeModel:
    """What ChatVocabulary reads from a LlamaModel, for a GGUF with or without a template."""

    path = Path("model.gguf")
    bos_token_id = eos_token_id = -1

    def __init__(self, template: str | None, architecture: str, tokens: tuple[str, ...]
                 ) -> None:
        self._template = template
        self.architecture = architecture
        self.has_token = vocab(*tokens)

    def chat_template(self) -> str | None:
        return self._template

    def apply_builtin_template(self, name: str, pairs: list[tuple[str, str]]) -> str:
        return f"[{name}]" + "".join(c for _, c in pairs)


def vocabulary(model: FakeModel, opts: LlamaCppOptions) -> ChatVocabulary:
    v = ChatVocabulary()
    v._init_text(model, opts)  # type: ignore[arg-type]
    return v


def test_gguf_without_template_gets_its_architectures_builtin_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="modelserve.runtimes.chat_vocab"):
        v = vocabulary(FakeModel(None, "gemma3", ("<start_of_turn>",)), LlamaCppOptions())
    assert v.template.name == "gemma" and v.template.render(MSGS) == "[gemma]hi"
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "'gemma'" in record.getMessage()
    assert "gemma3" in record.getMessage()


def test_config_template_name_and_source_win_over_the_gguf() -> None:
    model = FakeModel("{{ 'gguf' }}", "qwen2", ("<|im_start|>",))
    assert vocabulary(model, LlamaCppOptions()).template.render(MSGS) == "gguf"
    named = vocabulary(model, LlamaCppOptions(chat_template=" llama3 "))
    assert named.template.name == "llama3" and named.template.render(MSGS) == "[llama3]hi"
    source = vocabulary(model, LlamaCppOptions(chat_template="{{ 'mine' }}"))
    assert source.template.render(MSGS) == "mine"


def test_template_that_does_not_compile_falls_back_by_architecture() -> None:
    v = vocabulary(FakeModel("{% for %}", "phi3", ("<|end|>",)), LlamaCppOptions())
    assert v.template.name == "phi3"


def test_extra_variables_reach_the_template_but_not_over_its_own() -> None:
    """reasoning_effort and chat_template_kwargs (enable_thinking, ...) are template variables;
    the server's own names (messages, ...) keep their values."""
    tpl = ChatTemplate("{{ reasoning_effort }}|{{ enable_thinking }}|{{ messages | length }}|"
                       "{{ undefined_one is defined }}", "", "", builtin)
    out = tpl.render(MSGS, variables={"reasoning_effort": "high", "enable_thinking": False,
                                      "messages": []})
    assert out == "high|False|1|False"
