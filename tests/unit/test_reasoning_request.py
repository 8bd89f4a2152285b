"""The request fields of reasoning models: reasoning_effort and chat_template_kwargs become
template variables; wrong types or the template's own names are refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelserve.api.protocol import ChatCompletionRequest

BASE: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_both_become_template_variables() -> None:
    req = ChatCompletionRequest.model_validate(
        BASE | {"reasoning_effort": "low", "chat_template_kwargs": {"enable_thinking": True}})
    assert req.template_variables() == {"enable_thinking": True, "reasoning_effort": "low"}
    assert ChatCompletionRequest.model_validate(BASE).template_variables() == {}


@pytest.mark.parametrize(("extra", "field"), [
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"reasoning_effort": 3}, "reasoning_effort"),
    ({"chat_template_kwargs": "enable_thinking"}, "chat_template_kwargs"),
    ({"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs"),
])
def test_bad_values_are_refused(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest.model_validate(BASE | extra)
    assert err.value.errors()[0]["loc"][0] == field
