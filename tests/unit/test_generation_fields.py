"""ignore_eos, min_tokens and Predicted Outputs without a model: the request fields' checks,
their way into the engine's SamplingParams, and the prediction counts' way into usage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from modelserve.api import sampling
from modelserve.api.protocol import ChatCompletionRequest, CompletionRequest
from modelserve.chat import events as ev
from modelserve.chat.budget import sampling_params
from modelserve.chat.run import TurnRun
from modelserve.chat.turn import Sampling
from modelserve.engine.generation import Generation
from modelserve.engine.sequence import StepOutput

USER = [{"role": "user", "content": "Hi"}]


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **fields})


def first_error(**fields: Any) -> tuple[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as info:
        chat(**fields)
    error = info.value.errors()[0]
    return tuple(error["loc"]), str(error["msg"])


def test_min_tokens_over_the_limit_names_min_tokens_and_the_limit() -> None:
    assert first_error(min_tokens=9, max_tokens=8) == (
        ("min_tokens",), "9 is more than max_tokens (8)")
    # max_completion_tokens is what cuts a chat answer when both are sent
    loc, msg = first_error(min_tokens=9, max_tokens=100, max_completion_tokens=8)
    assert loc == ("min_tokens",) and "max_completion_tokens (8)" in msg
    assert first_error(min_tokens=-1)[0] == ("min_tokens",)
    assert chat(min_tokens=8, max_tokens=8).min_tokens == 8
    assert chat(min_tokens=500).min_tokens == 500  # no max: up to the context's room


def test_completions_hold_min_tokens_to_their_default_max_tokens() -> None:
    with pytest.raises(ValidationError) as info:
        CompletionRequest.model_validate({"model": "m", "prompt": "x", "min_tokens": 17})
    assert "max_tokens (16, its default)" in info.value.errors()[0]["msg"]
    req = CompletionRequest.model_validate({"model": "m", "prompt": "x", "min_tokens": 17,
                                            "max_tokens": 32, "ignore_eos": True})
    settings = sampling.sampling(req, req.max_tokens, None)
    assert settings.min_tokens == 17 and settings.ignore_eos


@pytest.mark.parametrize(("prediction", "loc"), [
    ({"type": "text", "content": "x"}, ("prediction", "type")),
    ({"content": "x"}, ("prediction", "type")),
    ({"type": "content", "content": 3}, ("prediction", "content")),
    ({"type": "content", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
     ("prediction", "content")),
    ({"type": "content", "content": [{"type": "text"}]}, ("prediction", "content")),
    ({"type": "content"}, ("prediction", "content")),
])
def test_a_bad_prediction_names_its_field(prediction: dict[str, Any],
                                          loc: tuple[str, ...]) -> None:
    assert first_error(prediction=prediction)[0] == loc


def test_a_prediction_is_its_text_whole() -> None:
    parts = [{"type": "text", "text": "def f():\n"}, {"type": "text", "text": "    pass\n"}]
    as_parts = chat(prediction={"type": "content", "content": parts})
    as_text = chat(prediction={"type": "content", "content": "def f():\n    pass\n"})
    assert as_parts.prediction is not None and as_text.prediction is not None
    assert as_parts.prediction.text() == as_text.prediction.text() == "def f():\n    pass\n"
    assert chat(prediction=None).prediction is None  # null: not set


def test_the_engine_gets_the_fields_for_every_choice() -> None:
    turn = Sampling(max_tokens=None, ignore_eos=True, min_tokens=50, prediction="x", n=2)
    params = [sampling_params(turn, 20, i, prediction=(5, 6)) for i in range(turn.n)]
    assert all(p.ignore_eos and p.prediction == (5, 6) for p in params)
    # without max_tokens the context's room is the budget: min_tokens never passes it
    assert params[0].min_tokens == 20
    assert sampling_params(Sampling(), 20, 0).prediction == ()


def test_prediction_counts_of_the_choices_add_up_in_usage() -> None:
    gens = [Generation(), Generation()]
    run = TurnRun(gens, 7, "m", None, False)
    # cumulative counts: only each sequence's last output carries its totals
    for gen, (accepted, rejected) in zip(gens, [(3, 1), (4, 2)], strict=True):
        gen.queue.put_nowait(StepOutput(text="a", token_ids=[1],
                                        accepted_prediction_tokens=1))
        gen.queue.put_nowait(StepOutput(text="b", token_ids=[2], finish_reason="stop",
                                        accepted_prediction_tokens=accepted,
                                        rejected_prediction_tokens=rejected))

    async def drain() -> None:
        async for _ in run.events():
            pass

    asyncio.run(drain())
    assert (run.usage.accepted_prediction_tokens, run.usage.rejected_prediction_tokens) == (7, 3)
    wire = sampling.usage(run.usage, reasoning_tokens=0).model_dump()
    assert wire["completion_tokens_details"] == {
        "reasoning_tokens": 0, "accepted_prediction_tokens": 7, "rejected_prediction_tokens": 3}
    assert "completion_tokens_details" not in sampling.usage(run.usage).model_dump()
    assert run.result is not None
    again = ev.Result.from_json(run.result.to_json())  # the response cache keeps the counts
    assert again.usage == run.usage


def test_a_cached_result_from_before_the_counts_still_reads() -> None:
    data = ev.Result("x", 1, "m", [], ev.Usage(3, 4, 1)).to_json()
    for key in ("accepted_prediction_tokens", "rejected_prediction_tokens"):
        del data["usage"][key]
    assert ev.Result.from_json(data).usage == ev.Usage(3, 4, 1)


class Words:
    def tokenize(self, text: str, special: bool = False, add_special: bool = True
                 ) -> list[int]:
        return [0] * (len(text.split()) + add_special)


def test_reasoning_tokens_add_up_over_choices_without_a_bos() -> None:
    model: Any = Words()
    assert sampling.reasoning_tokens(model, ["one two", None, "three"], 100) == 3
    assert sampling.reasoning_tokens(model, ["one two three"], 2) == 2  # never over the answer
