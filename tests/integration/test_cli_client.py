"""The client commands as users run them, against a real server with SmolLM2: `modelserve ps`,
`load`, `unload`/`stop`, `run` (one answer, piped stdin, and a session in a real terminal),
`completion`; and their one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import SMOLLM2, LiveServer, free_port, serve
from tests.fixtures.terminal import Terminal
from tests.helpers import modelserve_cli

CHAT = "smollm2"
SPARE = "spare"  # not preloaded: load and unload it
ADMIN_KEY, USER_KEY = "cli-admin-key-0123456789", "cli-user-key-0123456789"
SUMMARY = re.compile(r"prompt tokens: (\d+), completion tokens: (\d+)")
GREEDY = ("--temperature", "0", "--max-tokens", "12")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    small = {"context_size": 1024, "parallel": 2, "batch_size": 256}
    with serve(tmp_path_factory.mktemp("cli-client"), {"models": [
        {"name": CHAT, "source": SMOLLM2, "options": small, "keep_alive_seconds": 300},
        {"name": SPARE, "source": SMOLLM2, "options": {"context_size": 256, "parallel": 1},
         "preload": False},
    ]}) as server:
        yield server


def _rows(listing: str) -> dict[str, str]:
    return {line.split()[0]: line for line in listing.splitlines()[1:]}


def _one_line_error(done: subprocess.CompletedProcess[str], *mentions: str) -> None:
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for mention in mentions:
        assert mention in done.stderr, done.stderr


def test_ps_shows_models_with_state_memory_and_keep_alive(live: LiveServer) -> None:
    done = modelserve_cli("ps", url=live.url)
    assert done.returncode == 0, done.stderr
    header, *_ = done.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "KIND", "STATE"] and "KEEP-ALIVE LEFT" in header
    rows = _rows(done.stdout)
    assert re.search(r"chat\s+ready\s+\d+(\.\d)? MiB\s+0\s+\d+/\d+ \(\d+%\)\s+[45] minutes$",
                     rows[CHAT]), rows[CHAT]
    assert re.search(r"chat\s+unloaded\s+-\s+0\s+-\s+-$", rows[SPARE]), rows[SPARE]


def test_ps_json_entries_carry_keep_alive_and_kv_use(live: LiveServer) -> None:
    done = modelserve_cli("ps", "--json", "--url", live.url)
    entries = {e["name"]: e for e in map(json.loads, done.stdout.splitlines())}
    chat, spare = entries[CHAT], entries[SPARE]
    assert 0 < chat["keep_alive_seconds_left"] <= 300
    assert chat["kv_capacity_tokens"] >= 1024 and chat["kv_used_tokens"] >= 0
    assert spare["keep_alive_seconds_left"] is None and spare["kv_used_tokens"] is None


def test_load_unload_and_stop_change_what_ps_shows(live: LiveServer) -> None:
    def state() -> str:
        return _rows(modelserve_cli("ps", url=live.url).stdout)[SPARE].split()[2]

    for command, after in (("load", "ready"), ("unload", "unloaded"), ("load", "ready"),
                           ("stop", "unloaded")):
        done = modelserve_cli(command, SPARE, "--wait", url=live.url)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{SPARE}: {after}"
        assert state() == after


def test_unknown_model_is_one_line_on_stderr(live: LiveServer) -> None:
    for command in (("load", "nosuch"), ("unload", "nosuch"), ("run", "nosuch", "hi")):
        _one_line_error(modelserve_cli(*command, url=live.url), "nosuch")


def test_no_server_says_how_to_start_one() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for command in (("ps",), ("load", CHAT), ("run", CHAT, "hi")):
        _one_line_error(modelserve_cli(*command, url=url),
                        f"no modelserve server at {url}", "modelserve serve")


def test_run_answers_a_prompt_and_exits(live: LiveServer) -> None:
    done = modelserve_cli("run", CHAT, "What", "is", "the", "capital", "of", "France?",
                          *GREEDY, "--verbose", url=live.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and done.stdout.endswith("\n")
    match = SUMMARY.search(done.stderr)
    assert match and 0 < int(match[2]) <= 12, done.stderr
    # the same prompt and seed give the same answer: greedy decoding through the CLI
    again = modelserve_cli("run", CHAT, "What is the capital of France?", *GREEDY,
                           url=live.url)
    assert again.stdout == done.stdout


def test_run_answers_piped_stdin(live: LiveServer) -> None:
    done = modelserve_cli("run", CHAT, *GREEDY, "--system", "You are terse.", url=live.url,
                          stdin="Name a colour.\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    empty = modelserve_cli("run", CHAT, url=live.url, stdin="  \n")
    _one_line_error(empty, "empty")


def test_completion_script_covers_every_subcommand() -> None:
    for shell in ("bash", "zsh"):
        done = modelserve_cli("completion", shell)
        assert done.returncode == 0, done.stderr
        for command in ("serve", "bench", "ps", "load", "unload", "stop", "run", "completion"):
            assert command in done.stdout


# -- `modelserve run` in a real terminal -----------------------------------------------------


def _prompts(screen: str) -> int:
    return sum(line.startswith(">>>") for line in screen.splitlines())


def _at_prompt(count: int) -> Callable[[str], bool]:
    """The screen shows `count` prompts and waits at the last one, empty."""
    def check(screen: str) -> bool:
        lines = [line for line in screen.splitlines() if line.strip()]
        return _prompts(screen) == count and bool(lines) and lines[-1].rstrip() == ">>>"
    return check


def _usage(screen: str) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for m in SUMMARY.finditer(screen)]


def _terminal(live: LiveServer, *options: str) -> Terminal:
    return Terminal([sys.executable, "-m", "modelserve.cli", "run", CHAT, "--verbose",
                     *options], env={"MODELSERVE_URL": live.url})


def test_run_session_keeps_history_reads_triple_quotes_and_ends_on_bye(
        live: LiveServer) -> None:
    term = _terminal(live, *GREEDY)
    try:
        term.wait_for(_at_prompt(1))
        term.type("My name is Zorblax. Say hello to me.")
        term.wait_for(_at_prompt(2))
        term.type("What is my name?")
        screen = term.wait_for(_at_prompt(3))
        (first_prompt, first_answer), (second_prompt, _) = _usage(screen)
        # the second request carried the first question and answer: the history
        assert second_prompt > first_prompt + first_answer

        # a message of several lines between triple quotes is one message
        term.type('"""Here are two lines:')
        term.wait_for(lambda s: s.rstrip().endswith("..."))
        term.type('first, and second."""')
        screen = term.wait_for(_at_prompt(4))
        assert len(_usage(screen)) == 3 and "... first, and second." in screen

        term.type("/clear")
        term.wait_for(lambda s: "Cleared session context" in s and _at_prompt(5)(s))
        term.type("Hello!")
        screen = term.wait_for(_at_prompt(6))
        assert _usage(screen)[-1][0] < second_prompt  # a fresh history: a short prompt

        term.type("/bye")
        term.wait_for(lambda s: ">>> /bye" in s)  # the keystrokes reached the session
        assert term.wait_exit() == 0
    finally:
        term.close()


def test_ctrl_c_stops_an_answer_and_the_session_goes_on(live: LiveServer) -> None:
    term = _terminal(live, "--max-tokens", "900", "--temperature", "0")
    try:
        term.wait_for(_at_prompt(1))
        term.type("Write a very long story about a dragon and a knight, in many chapters.")
        term.wait_for(lambda s: len(s.split("chapters.", 1)[-1].strip()) > 20)
        term.key("C-c")
        screen = term.wait_for(_at_prompt(2), timeout=20)
        assert _usage(screen) == []  # cut short: no usage came, the stream was closed
        with httpx.Client(base_url=live.url) as http:  # the server let the request go
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                models = {m["name"]: m for m in http.get("/admin/models").json()["data"]}
                if models[CHAT]["in_flight"] == 0:
                    break
                time.sleep(0.1)
            assert models[CHAT]["in_flight"] == 0
        term.type("Say hi.")  # the session still answers
        assert len(_usage(term.wait_for(_at_prompt(3)))) == 1
        term.key("C-d")
        assert term.wait_exit() == 0
    finally:
        term.close()


# -- a server that wants API keys -------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("cli-keys"), {
        "server": {"security": {"api_keys": [{"key": ADMIN_KEY, "scope": "admin"},
                                             {"key": USER_KEY}]}},
        "models": [{"name": CHAT, "source": SMOLLM2, "preload": False}],
    }) as server:
        yield server


def test_api_keys_needed_refused_and_accepted(keyed: LiveServer) -> None:
    _one_line_error(modelserve_cli("ps", url=keyed.url), "needs an API key", "--api-key")
    _one_line_error(modelserve_cli("ps", "--api-key", USER_KEY, url=keyed.url),
                    "refused this API key", "admin scope")
    done = modelserve_cli("ps", url=keyed.url, env={"MODELSERVE_API_KEY": ADMIN_KEY})
    assert done.returncode == 0 and CHAT in done.stdout, done.stderr
