"""The chat benchmark's workloads beyond one prompt per request, both deterministic and greedy,
so every server answers the very same requests:

- multiturn: U users, each a conversation of T turns over one shared ~1000-token system
  prompt; every turn sends the whole history so far (the answers the server itself streamed)
  plus a new question. Users take turns round-robin (every user's turn 1, then every user's
  turn 2, ...) on C workers, so between two turns of one user the server serves many other
  conversations: a prompt cache must keep the history somewhere for the next turn to reuse it.
- editing: "rewrite this ~300-token module with one small change"; the answer is mostly the
  prompt's code again, which n-gram speculation and Predicted Outputs (`--prediction`: the
  original code as `prediction`) are meant to make cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from modelserve.loadgen.chat import (
    DEFAULTS,
    Client,
    LevelResult,
    RequestResult,
    auth_headers,
    cell,
    level_result,
    markdown,
    one_request,
    open_client,
    run_level,
)
from modelserve.loadgen.surfaces import SURFACES

# Made-up rules of a made-up city, built from rotating word lists so that the text is long,
# varied enough to read like rules (no repeated line a tokenizer or n-gram drafter could
# shortcut) and identical on every run.
_WHO = ["Lantern keepers", "Bridge wardens", "Night bakers", "Canal pilots", "Bell ringers",
        "Glass menders", "Archive clerks", "Tide watchers", "Market stewards", "Kite makers",
        "Orchard tenders", "Clock setters", "Salt traders"]
_MUST = ["must report", "may never sell", "are required to inspect", "should politely refuse",
         "have to record", "are allowed to borrow", "must repaint", "may only repair",
         "are expected to deliver", "must count"]
_WHAT = ["every blue lantern", "the copper weights", "all river maps", "the spare oars",
         "each sealed letter", "the festival ribbons", "old harbour tokens", "the winter grain",
         "every cracked bell", "the silver keys", "loose paving stones"]
_WHEN = ["before the third bell of the morning", "whenever the western fog rolls in",
         "on the first market day of each month", "unless the mayor has signed a waiver",
         "while the north gate remains closed", "after any storm stronger than a gale",
         "during the lantern festival only", "if a child from the hill district asks",
         "once the tide falls below the green mark"]
_WHY = ["because the old charter says so", "to keep the canals safe at night",
        "so that travellers can find the inns", "since the guilds agreed to it in 1712",
        "to honour the founders of the city", "as the harbour council decided"]


def system_prompt(words: int = 750) -> str:
    """The shared system prompt, about `words` words (SmolLM2's tokenizer makes ~1.3 tokens of
    a word of this text, so the default is ~1000 tokens)."""
    lines = ["You are the guide of the city of Varrow. Answer questions about its rules "
             "briefly and precisely, quoting rule numbers. The rules are:"]
    count = len(lines[0].split())
    n = 0
    while count < words:
        n += 1
        # Strides prime to each list's length: consecutive rules share no part.
        rule = (f"Rule {n}: {_WHO[n % len(_WHO)]} {_MUST[(n * 3) % len(_MUST)]} "
                f"{_WHAT[(n * 7) % len(_WHAT)]} {_WHEN[(n * 5) % len(_WHEN)]}, "
                f"{_WHY[(n * 11) % len(_WHY)]}.")
        lines.append(rule)
        count += len(rule.split())
    return "\n".join(lines)


def first_question(user: int) -> str:
    return (f"Hello, I am visitor number {user + 1} and I work with "
            f"{_WHAT[user % len(_WHAT)]}. Which rules apply to me, and why?")


_FOLLOW_UPS = ["Thanks. Can you summarise rule {k} in one sentence?",
               "What happens if someone ignores rule {k}?",
               "Does rule {k} still apply during the lantern festival?",
               "Give me a short example of rule {k} in practice.",
               "Which guild enforces rule {k}, and how?"]


def follow_up(user: int, turn: int) -> str:
    """The user's question at `turn` (1-based, turn >= 2), about one rule or another."""
    k = (user * 7 + turn * 13) % 30 + 1  # the default prompt has 31 rules
    return _FOLLOW_UPS[(user + turn) % len(_FOLLOW_UPS)].format(k=k)


def turn_order(users: int, turns: int) -> list[tuple[int, int]]:
    """(turn, user) in the order workers take them: every user's turn 1, then every user's
    turn 2, ...; so U - 1 other requests come between two turns of one user."""
    return [(turn, user) for turn in range(1, turns + 1) for user in range(users)]


async def run_multiturn(http: Client, url: str, model: str, users: int, turns: int,
                        concurrency: int, max_tokens: int, system_words: int,
                        extra: dict[str, Any]) -> list[RequestResult]:
    dialect = SURFACES["chat"]
    system = system_prompt(system_words)
    histories = [[{"role": "system", "content": system},
                  {"role": "user", "content": first_question(u)}] for u in range(users)]
    finished = {key: asyncio.Event() for key in turn_order(users, turns)}
    failed = [False] * users
    results: list[RequestResult] = []
    order: Iterator[tuple[int, int]] = iter(turn_order(users, turns))

    async def worker() -> None:
        # One shared iterator: each (turn, user) is taken once, in order, by the next free
        # worker; the event loop runs one worker at a time, so next() needs no lock.
        for turn, user in order:
            if turn > 1:  # the previous turn's answer is part of this turn's prompt
                await finished[(turn - 1, user)].wait()
            if failed[user]:
                result = RequestResult(ok=False, error="an earlier turn of this user failed")
            else:
                body = {**dialect.body(model, "", max_tokens), **extra,
                        "messages": list(histories[user])}
                result = await one_request(http, url, dialect, body)
                if result.ok:
                    histories[user] += [{"role": "assistant", "content": result.content},
                                        {"role": "user", "content": follow_up(user, turn + 1)}]
                else:
                    failed[user] = True
            result.turn = turn
            results.append(result)
            finished[(turn, user)].set()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


# The editing workload's module: ~300 tokens of plain Python, and small edits to ask for.
CODE = '''"""Prices and stock of a small shop."""

from dataclasses import dataclass

TAX_RATE = 0.2
DISCOUNT_THRESHOLD = 100.0
DISCOUNT_RATE = 0.05
MAX_ITEMS = 50


@dataclass
class Item:
    name: str
    price: float
    quantity: int


def subtotal(items: list[Item]) -> float:
    """The price of every item times its quantity, before tax."""
    return sum(item.price * item.quantity for item in items)


def discount(amount: float) -> float:
    """Large orders get a discount."""
    if amount >= DISCOUNT_THRESHOLD:
        return amount * DISCOUNT_RATE
    return 0.0


def compute_total(items: list[Item]) -> float:
    """What the customer pays: subtotal, less the discount, plus tax."""
    if len(items) > MAX_ITEMS:
        raise ValueError("too many items in one order")
    amount = subtotal(items)
    amount -= discount(amount)
    return round(amount * (1 + TAX_RATE), 2)


def restock(items: list[Item], name: str, count: int) -> None:
    """Add `count` units to the item called `name`."""
    for item in items:
        if item.name == name:
            item.quantity += count
            return
    raise KeyError(name)
'''
EDITS = ["rename the function compute_total to order_total",
         "change TAX_RATE from 0.2 to 0.21",
         "rename the function restock to add_stock",
         "change MAX_ITEMS from 50 to 80",
         "change DISCOUNT_THRESHOLD from 100.0 to 150.0",
         "rename the function subtotal to items_subtotal"]


def editing_prompt(index: int) -> str:
    return (f"Rewrite the Python module below with one change: {EDITS[index % len(EDITS)]}. "
            "Keep everything else exactly the same. Reply with the whole module only, "
            f"no explanation.\n\n{CODE}")


def editing_body(model: str, index: int, max_tokens: int, prediction: bool,
                 extra: dict[str, Any]) -> dict[str, Any]:
    body = {**SURFACES["chat"].body(model, editing_prompt(index), max_tokens), **extra}
    if prediction:  # OpenAI's Predicted Outputs: the answer should be mostly this text
        body["prediction"] = {"type": "content", "content": CODE}
    return body


async def run_editing(http: Client, url: str, model: str, concurrency: int, per_client: int,
                      max_tokens: int, prediction: bool,
                      extra: dict[str, Any]) -> list[RequestResult]:
    dialect = SURFACES["chat"]

    async def client_loop(index: int) -> list[RequestResult]:
        return [await one_request(http, url, dialect, editing_body(
            model, index + round_ * concurrency, max_tokens, prediction, extra))
            for round_ in range(per_client)]

    nested = await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    return [r for rs in nested for r in rs]


async def run_workload(args: argparse.Namespace, level: int, max_tokens: int,
                       label: str) -> LevelResult:
    """One level (`level` workers) of the multiturn or editing workload."""
    url = args.url.rstrip("/")
    extra = {"ignore_eos": True} if args.ignore_eos else {}
    workload = args.workload
    started = time.perf_counter()
    async with open_client(args.client, level,
                           auth_headers(SURFACES["chat"], args.api_key)) as http:
        if workload == "multiturn":
            results = await run_multiturn(http, url, args.model, args.users, args.turns, level,
                                          max_tokens, args.system_words, extra)
        else:
            results = await run_editing(http, url, args.model, level,
                                        args.requests_per_client, max_tokens, args.prediction,
                                        extra)
            workload += "+prediction" if args.prediction else ""
    wall = time.perf_counter() - started
    workload += "+ignore_eos" if args.ignore_eos else ""
    return level_result(label, level, results, wall, workload)


def markdown_extras(rows: list[LevelResult]) -> str:
    """What the multiturn and editing rows add to the plain table ("-": not reported)."""
    lines = ["| server | workload | conc | latency p50 ms | prompt tok | cached tok "
             "| accepted / rejected prediction tok | drafts accepted / drafted "
             "| TTFT p50 ms by turn |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        by_turn = " / ".join(cell(t) for t in r.ttft_p50_by_turn_ms or []) or "-"
        lines.append(f"| {r.label} | {r.workload} | {r.concurrency} | {cell(r.latency_p50_ms)} "
                     f"| {cell(r.prompt_tokens)} | {cell(r.cached_tokens)} "
                     f"| {cell(r.accepted_prediction_tokens)} / "
                     f"{cell(r.rejected_prediction_tokens)} "
                     f"| {cell(r.draft_accepted_tokens)} / {cell(r.draft_tokens)} | {by_turn} |")
    return "\n".join(lines)


def run_chat_bench(args: argparse.Namespace) -> None:
    default_levels, default_tokens = DEFAULTS[args.workload]
    levels = [int(c) for c in str(args.concurrency or default_levels).split(",") if c.strip()]
    max_tokens = args.max_tokens or default_tokens
    conversation = args.workload in ("multiturn", "editing")
    if conversation and args.surface != "chat":
        sys.exit(f"modelserve: --workload {args.workload} runs on --surface chat only")
    if args.prediction and args.workload != "editing":
        sys.exit("modelserve: --prediction is for --workload editing")
    label = args.label or args.url
    rows = []
    for level in levels:
        if conversation:
            row = asyncio.run(run_workload(args, level, max_tokens, label))
        else:
            row = asyncio.run(run_level(args.url.rstrip("/"), args.model, level, max_tokens,
                                        args.requests_per_client, label, args.api_key,
                                        args.workload, args.surface, args.client,
                                        args.ignore_eos))
        rows.append(row)
        print(json.dumps(asdict(row)), flush=True)
        if args.json_out:
            with open(args.json_out, "a") as fh:
                fh.write(json.dumps(asdict(row)) + "\n")
    print(markdown(rows))
    if conversation:
        print(markdown_extras(rows))
