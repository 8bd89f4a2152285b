"""The chat benchmark's multiturn and editing workloads: their prompts, the order users take
turns in, what a level reports from the servers' usage, and the summary's ratios."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from modelserve.loadgen.chat import RequestResult, level_result
from modelserve.loadgen.chat_workloads import (
    CODE,
    EDITS,
    editing_body,
    first_question,
    follow_up,
    markdown_extras,
    run_multiturn,
    system_prompt,
    turn_order,
)
from modelserve.loadgen.summary import summarise_workloads


def test_the_system_prompt_is_long_fixed_and_never_repeats_a_rule() -> None:
    text = system_prompt()
    assert text == system_prompt()  # every server, every run: the same prompt
    assert 750 <= len(text.split()) < 800  # ~1000 SmolLM2 tokens
    rules = text.splitlines()[1:]
    assert len(rules) >= 30  # follow-ups ask about rules 1..30
    assert len({r.split(": ", 1)[1] for r in rules}) == len(rules)
    assert len(system_prompt(40).split()) < 80


def test_questions_differ_per_user_and_turn() -> None:
    assert len({first_question(u) for u in range(11)}) == 11
    asked = {follow_up(u, t) for u in range(8) for t in range(2, 5)}
    assert len(asked) > 16
    ks = [int(q.split("rule ")[1].split()[0].rstrip("?,.")) for q in asked]
    assert min(ks) >= 1 and max(ks) <= 30


def test_users_take_turns_round_robin() -> None:
    assert turn_order(3, 2) == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    order = turn_order(64, 4)
    assert len(order) == 256
    # Between two turns of one user, every other user has a turn.
    assert order.index((2, 5)) - order.index((1, 5)) == 64


class FakeChat:
    """A Chat Completions stream that answers "answer-N" and records every request."""

    def __init__(self, fail_user: int | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail_user = fail_user

    @asynccontextmanager
    async def stream(self, url: str, body: dict[str, Any]
                     ) -> AsyncIterator[tuple[int, AsyncIterator[str]]]:
        n = len(self.bodies)
        self.bodies.append(body)
        failing = self.fail_user is not None and f"number {self.fail_user + 1} " in \
            body["messages"][1]["content"]

        async def lines() -> AsyncIterator[str]:
            await asyncio.sleep(0.001 * (n % 3))  # answers finish out of order
            if failing:
                yield 'data: {"error": {"message": "boom"}}'
                return
            yield 'data: {"choices": [{"delta": {"content": "answer-"}}]}'
            yield f'data: {{"choices": [{{"delta": {{"content": "{n}"}}}}]}}'
            yield ('data: {"choices": [], "usage": {"completion_tokens": 2, '
                   '"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 60}}}')
            yield "data: [DONE]"

        yield 200, lines()


def test_each_turn_sends_the_history_with_the_streamed_answers() -> None:
    chat = FakeChat()
    results = asyncio.run(run_multiturn(chat, "http://x", "m", users=3, turns=3, concurrency=2,
                                        max_tokens=8, system_words=40, extra={"ignore_eos": True}))
    assert len(results) == 9 and all(r.ok for r in results)
    assert sorted(r.turn for r in results) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    # Turn-major: all three first turns are sent before any later turn.
    lengths = [len(b["messages"]) for b in chat.bodies]
    assert lengths[:3] == [2, 2, 2] and sorted(lengths) == [2, 2, 2, 4, 4, 4, 6, 6, 6]
    last = chat.bodies[-1]
    assert last["ignore_eos"] and last["max_tokens"] == 8 and last["temperature"] == 0
    roles = [m["role"] for m in last["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    # The assistant turns are the answers this user got, in order.
    answers = [m["content"] for m in last["messages"] if m["role"] == "assistant"]
    assert all(a.startswith("answer-") for a in answers)
    assert answers[0] != answers[1]
    assert last["messages"][0]["content"] == system_prompt(40)
    assert all(b["messages"][0] == last["messages"][0] for b in chat.bodies)


def test_a_failed_turn_ends_that_users_conversation_only() -> None:
    chat = FakeChat(fail_user=1)
    results = asyncio.run(run_multiturn(chat, "http://x", "m", users=3, turns=3, concurrency=3,
                                        max_tokens=8, system_words=40, extra={}))
    failed = [r for r in results if not r.ok]
    assert len(failed) == 3  # its turn 1 failed; its turns 2 and 3 are never sent
    assert len(chat.bodies) == 7
    assert sum("earlier turn" in (r.error or "") for r in failed) == 2


def test_editing_asks_for_one_change_and_may_predict_the_code() -> None:
    plain = editing_body("m", 1, 400, prediction=False, extra={})
    assert "prediction" not in plain and plain["max_tokens"] == 400
    prompt = plain["messages"][0]["content"]
    assert EDITS[1] in prompt and prompt.endswith(CODE)
    predicted = editing_body("m", 1, 400, prediction=True, extra={})
    assert predicted["prediction"] == {"type": "content", "content": CODE}
    assert editing_body("m", 7, 400, False, {})["messages"] == plain["messages"]  # 7 % 6
    assert all(name in CODE for name in ("compute_total", "restock", "subtotal", "TAX_RATE",
                                         "MAX_ITEMS", "DISCOUNT_THRESHOLD"))


def done(turn: int, ttft: float, usage: dict[str, Any] | None,
         timings: dict[str, Any] | None = None) -> RequestResult:
    return RequestResult(ok=True, tokens=10, ttft=ttft, latency=ttft + 1, usage=usage,
                         timings=timings, turn=turn)


def test_a_level_sums_what_servers_report_and_none_where_they_do_not() -> None:
    results = [
        done(1, 1.0, {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 0}}),
        done(1, 3.0, {"prompt_tokens": 100}),
        done(2, 0.2, {"prompt_tokens": 150, "prompt_tokens_details": {"cached_tokens": 90},
                      "completion_tokens_details": {"accepted_prediction_tokens": 7,
                                                    "rejected_prediction_tokens": 2}}),
        RequestResult(ok=False, error="x", turn=2),
    ]
    row = level_result("ms", 2, results, 2.0, "multiturn")
    assert (row.requests, row.errors, row.completion_tokens) == (4, 1, 30)
    assert row.prompt_tokens == 350 and row.cached_tokens == 90
    assert (row.accepted_prediction_tokens, row.rejected_prediction_tokens) == (7, 2)
    assert row.draft_tokens is None  # no llama-server timings: unknown, not 0
    assert row.ttft_p50_by_turn_ms == [1000.0, 200.0]  # percentile(): the lower of two
    assert row.latency_p50_ms == 2000.0

    peer = level_result("peer", 1, [done(0, 1.0, None, {"draft_n": 12,
                                                         "draft_n_accepted": 9})], 1.0)
    assert peer.cached_tokens is None and peer.prompt_tokens is None
    assert (peer.draft_accepted_tokens, peer.draft_tokens) == (9, 12)
    assert peer.ttft_p50_by_turn_ms is None
    table = markdown_extras([row, peer])
    assert "| ms | multiturn | 2 | 2000.0 | 350 | 90 | 7 / 2 | - / - | 1000.0 / 200.0 |" in table
    assert "| peer | text | 1 | 2000.0 | - | - | - / - | 9 / 12 | - |" in table


def test_the_summary_gives_the_baselines_advantage(tmp_path: Path) -> None:
    def row(label: str, tps: float, ttft: float, latency: float, cached: int | None,
            by_turn: list[float]) -> dict[str, Any]:
        return {"label": label, "concurrency": 16, "requests": 8, "errors": 0,
                "workload": "multiturn", "tokens_per_s": tps, "ttft_p50_ms": ttft,
                "ttft_p99_ms": ttft * 2, "latency_p50_ms": latency, "prompt_tokens": 1000,
                "cached_tokens": cached, "ttft_p50_by_turn_ms": by_turn}

    path = tmp_path / "w.jsonl"
    rows = [row("modelserve", 200.0, 100.0, 400.0, 800, [300.0, 50.0]),
            row("modelserve", 220.0, 120.0, 440.0, 700, [340.0, 70.0]),
            row("llama-server", 100.0, 330.0, 630.0, None, [500.0, 300.0])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = summarise_workloads(path, "modelserve").splitlines()
    assert table[2].startswith("| multiturn | modelserve | 16 | 2 | 210.0 | - | 110 | - |")
    assert "| 1500 / 2000 (75 %) |" in table[2] and "| 320.0 / 60.0 |" in table[2]
    # modelserve: 2.10x the tok/s, 1/3 of the TTFT, 3/5 of the latency.
    assert table[3].startswith("| multiturn | llama-server | 16 | 1 | 100.0 | 2.10x | 330 "
                               "| 3.00x | 660 | 630 | 1.50x | - / 1000 |")
    assert table[3].endswith("| 500.0 / 300.0 | 0/8 |")


def test_the_chat_stream_gives_its_text_usage_and_timings() -> None:
    from modelserve.loadgen.surfaces import SURFACES

    read = SURFACES["chat"].read
    line = read('data: {"choices": [{"delta": {"content": "Hi"}}, {"delta": {"content": "!"}}]}')
    assert line.text and line.content == "Hi!" and line.usage is None
    last = read('data: {"choices": [], "usage": {"completion_tokens": 3, "prompt_tokens_details":'
                ' {"cached_tokens": 2}}, "timings": {"draft_n": 4}}')
    assert not last.text and last.tokens == 3 and last.timings == {"draft_n": 4}
    assert last.usage is not None and last.usage["prompt_tokens_details"]["cached_tokens"] == 2
