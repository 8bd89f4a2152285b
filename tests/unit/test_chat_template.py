import pytest

from modelserve.runtimes.chat_template import ChatTemplate, ChatTemplateError

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
