"""Helpers shared by test modules (fixtures live in conftest.py): OpenAI error checks,
/metrics readers, chat content parts, a local HTTP host for remote-image tests, model states
and streams that must end cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.images import data_url, image_bytes

# logit_bias that bans SmolLM2's end-of-generation tokens: answers run to max_tokens.
NO_EOS = {"0": -100, "1": -100, "2": -100}
# A grammar (the llama.cpp extra) that makes any model think first: a reasoning answer.
THINK_THEN_ANSWER = 'root ::= "<think>" [a-z ]{1,40} "</think>" [A-Za-z ]{1,40}'
PNG = data_url(image_bytes("PNG", seed=1))
MetricSamples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def assert_openai_error(resp: httpx.Response, status: int, param: str | None = None,
                        code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return dict(err)


def metric(http: httpx.Client, name: str, model: str) -> float:
    scrape = http.get("/metrics")
    assert scrape.status_code == 200, scrape.text
    for family in text_string_to_metric_families(scrape.text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("model") == model:
                return float(sample.value)
    raise AssertionError(f"{name} not found")


def samples(http: httpx.Client, path: str = "/admin/metrics") -> MetricSamples:
    out = {}
    for family in text_string_to_metric_families(http.get(path).text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def value(data: MetricSamples, name: str, **labels: str) -> float:
    return data.get((name, frozenset(labels.items())), 0.0)


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "low"}}


class QuietHandler(BaseHTTPRequestHandler):
    """A test HTTP handler: `reply` writes one whole response; nothing is logged."""

    def reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_host(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """A local HTTP server on 127.0.0.1 answering with `handler`; yields its port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def admin_models(http: httpx.Client) -> dict[str, dict[str, Any]]:
    """/admin/models by name."""
    return {m["name"]: m for m in http.get("/admin/models").json()["data"]}


def wait_state(http: httpx.Client, name: str, *states: str, timeout: float = 120,
               check: Callable[[dict[str, Any]], bool] = lambda m: True) -> dict[str, Any]:
    """Poll /admin/models until the model is in one of `states` (and `check` holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = admin_models(http)[name]
        if model["state"] in states and check(model):
            return model
        time.sleep(0.02)
    raise AssertionError(f"{name} never reached {states}: {admin_models(http)[name]}")


def sse_events(url: str, path: str, body: dict[str, Any], events: list[str],
               started: threading.Event | None = None, timeout: float = 120) -> None:
    """POST a streamed request and append each event's data to `events` as it arrives
    (`started` is set at the third event)."""
    with httpx.stream("POST", f"{url.rstrip('/')}{path}", json=body, timeout=timeout) as resp:
        if resp.status_code != 200:  # refused before any event: one entry saying how
            resp.read()
            events.append(json.dumps({"http_status": resp.status_code, **resp.json()}))
            return
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                if started is not None and len(events) > 2:
                    started.set()


def assert_ended_cleanly(events: list[str]) -> str:
    """A stream ends with `[DONE]`, after an error event if it failed, or is refused before
    it starts with a 503 (its model restarting, not back within the request's wait); returns
    "error", "done" or "refused"."""
    if len(events) == 1 and events[0].startswith('{"http_status"'):
        refused = json.loads(events[0])
        assert refused["http_status"] == 503, refused
        assert refused["error"]["code"] in ("model_unavailable", "model_loading"), refused
        return "refused"
    assert events and events[-1] == "[DONE]", events[-3:]
    if len(events) > 1 and '"error"' in events[-2]:
        error = json.loads(events[-2])["error"]
        assert error["code"] == "model_unavailable", error
        return "error"
    return "done"


def kill_during_streams(http: httpx.Client, model: str, path: str, body: dict[str, Any],
                        streams: int, rounds: int, latest: float, seed: int) -> list[str]:
    """`rounds` times: open `streams` streams on the model, SIGKILL its worker at a random
    moment in [0, latest) s, and check that every stream ended cleanly; returns how each
    ended ("error" or "done"). Each round waits for the restarted worker first."""
    rng, ends, pid = random.Random(seed), [], None
    for _ in range(rounds):
        pid = wait_state(http, model, "ready", timeout=60,
                         check=lambda m, old=pid: m["pid"] != old)["pid"]
        runs: list[list[str]] = [[] for _ in range(streams)]
        threads = [threading.Thread(target=sse_events, args=(str(http.base_url), path, body,
                                                             events)) for events in runs]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.0, latest))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive(), "a stream never ended"
        ends += [assert_ended_cleanly(events) for events in runs]
    return ends


def assert_ollama_error(resp: httpx.Response, status: int, *mentions: str) -> str:
    """An error in Ollama's shape, `{"error": "message"}`, naming what it should."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    for mention in mentions:
        assert mention in body["error"], body
    return str(body["error"])


def typed_sse(url: str, path: str, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """POST a streamed request of a typed-event API (OpenAI Responses): each event's
    `event:` name and its data, in order."""
    out: list[tuple[str, dict[str, Any]]] = []
    name = ""
    with httpx.stream("POST", f"{url.rstrip('/')}{path}", json=body, headers=headers,
                      timeout=120) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
    return out


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing transcripts."""
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)] / max(1, len(ref))


def decode_audio(data: bytes, rate: int = 16000) -> Any:
    """Any audio file PyAV reads, as mono float32 samples at `rate` (the server's decoder)."""
    from modelserve.audio.decode import decode

    return decode(data, max_seconds=3600, rate=rate)


# -- the model store (modelserve pull | list | rm) --------------------------------------------


def store_env(cache: Any, hf_endpoint: str | None = None) -> dict[str, str]:
    """Environment variables for a `modelserve` process whose store is `cache` (never the
    real one), with the Hugging Face hub at `hf_endpoint` and no token or cache of the user's."""
    env = {"MODEL_CACHE": str(cache), "HF_HOME": str(cache / "hf-home"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "NO_COLOR": "1", "HF_TOKEN": ""}
    if hf_endpoint is not None:
        env["HF_ENDPOINT"] = hf_endpoint
    return env


# -- the modelserve command as a subprocess (client commands against a running server) --------


def modelserve_cli(*args: str, url: str | None = None, stdin: str | None = None,
                   env: dict[str, str] | None = None,
                   timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`modelserve ARGS...` run as users run it (`python -m modelserve.cli`), pointed at `url`
    through MODELSERVE_URL; stdin is `stdin` (a pipe) or /dev/null, never the test's own."""
    environment = {**os.environ, **(env or {})}
    if url is not None:
        environment["MODELSERVE_URL"] = url
    return subprocess.run([sys.executable, "-m", "modelserve.cli", *args], input=stdin,
                          stdin=subprocess.DEVNULL if stdin is None else None,
                          capture_output=True, text=True, env=environment, timeout=timeout)


# -- the CPU plan (tests/integration/test_cpu_plan.py) ---------------------------------------

def thread_affinities(pid: int) -> set[str]:
    """The `Cpus_allowed_list` of every thread of process `pid` (e.g. {"0"}, {"0-1"})."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        # (a thread that just ended has no status any more)
        with contextlib.suppress(FileNotFoundError), \
                open(f"/proc/{pid}/task/{tid}/status") as status:
            found |= {line.split(":", 1)[1].strip() for line in status
                      if line.startswith("Cpus_allowed_list:")}
    return found


def thread_nices(pid: int) -> set[int]:
    """The nice value of every thread of process `pid`, as the kernel has it."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), \
                open(f"/proc/{pid}/task/{tid}/stat") as stat:
            # after the command's closing parenthesis: state is field 3, nice field 19
            found.add(int(stat.read().rsplit(")", 1)[1].split()[16]))
    return found


def in_cgroup(procs: str) -> list[str]:
    """A command prefix that moves itself into the cgroup whose `cgroup.procs` is `procs`,
    then execs the rest (so the server starts inside it)."""
    return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh"]


@contextlib.contextmanager
def cpu_quota_cgroup(quota_us: int, period_us: int = 100000) -> Iterator[str]:
    """A new cgroup with that CPU quota: cgroup v2's where it has the cpu controller, else
    v1's cpu hierarchy. Yields its `cgroup.procs` path; skips the test where none can be
    made (not root, a read-only /sys/fs/cgroup, no cpu controller)."""
    import pytest

    name = f"modelserve-test-{os.getpid()}"
    root = "/sys/fs/cgroup"
    directory, limits = "", {}
    try:
        with open(f"{root}/cgroup.controllers") as controllers:
            v2 = "cpu" in controllers.read().split()
    except OSError:
        v2 = False
    if v2:
        directory, limits = f"{root}/{name}", {"cpu.max": f"{quota_us} {period_us}"}
    else:
        mount = next((f"{root}/{m}" for m in ("cpu", "cpu,cpuacct")
                      if os.path.isfile(f"{root}/{m}/cpu.cfs_quota_us")), None)
        if mount is None:
            pytest.skip("no cgroup cpu controller here (neither v2 nor v1)")
        directory = f"{mount}/{name}"
        limits = {"cpu.cfs_period_us": str(period_us), "cpu.cfs_quota_us": str(quota_us)}
    try:
        if v2:
            with open(f"{root}/cgroup.subtree_control", "w") as control:
                control.write("+cpu")
        os.mkdir(directory)
        for file, value in limits.items():
            with open(f"{directory}/{file}", "w") as out:
                out.write(value)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.rmdir(directory)
        pytest.skip(f"cannot make a cgroup with a CPU quota here: {exc}")
    try:
        yield f"{directory}/cgroup.procs"
    finally:
        for _ in range(50):  # its processes may take a moment to be gone
            try:
                os.rmdir(directory)
                break
            except OSError:
                time.sleep(0.1)


async def greedy_stream_text(client: Any, model: str, prompt: str, max_tokens: int) -> str:
    """A greedy chat answer to one user message, streamed (an openai.AsyncOpenAI `client`),
    as its text."""
    out = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
        temperature=0, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in out if c.choices])


def stop_process(proc: subprocess.Popen[Any], grace: float, after_kill: float = 10) -> None:
    """SIGTERM, `grace` seconds to end, then SIGKILL (a process that already ended: reaped)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=after_kill)
