"""/v1/images/* through HTTP with the official openai SDK and a real (tiny, random-weight)
Stable Diffusion pipeline that diffusers loads from disk."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from PIL import Image

from modelserve.loadgen.tiny_diffusion import build_tiny_pipeline
from tests.conftest import CHAT_MODEL, SMOLLM2, LiveServer
from tests.helpers import admin_models, assert_openai_error, metric, wait_state

MODEL = "tiny-sd"
DISK_MODEL = "tiny-sd-disk"
BUSY_MODEL = "tiny-sd-one"
TTL = 3.0
FAST = {"num_inference_steps": 2}


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "model")


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path
                 ) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("images-config")
    limits = {"max_width": 512, "max_height": 512, "max_n": 4, "default_steps": 2,
              "max_steps": 2000, "url_ttl_seconds": TTL}
    config = root / "models.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"max_request_bytes": 1024 * 1024, "max_upload_bytes": 1024 * 1024},
        "models": [
            {"name": MODEL, "kind": "images", "source": str(tiny_sd),
             "options": {**limits, "max_input_pixels": 256 * 256}},
            {"name": DISK_MODEL, "runtime": "diffusers", "source": str(tiny_sd),
             "options": {**limits, "url_storage": str(root / "urls"), "dtype": "float32",
                         "scheduler": "DDIMScheduler", "default_response_format": "b64_json",
                         "default_size": "96x64"}},
            {"name": BUSY_MODEL, "kind": "images", "source": str(tiny_sd),
             "options": {**limits, "max_waiting": 0, "url_ttl_seconds": 600}},
            {"name": CHAT_MODEL, "source": SMOLLM2,
             "options": {"context_size": 256, "parallel": 1}},
        ],
    }))
    with LiveServer(config) as live:
        yield live


@pytest.fixture(scope="module")
def client(image_server: LiveServer) -> openai.OpenAI:
    return image_server.openai()


@pytest.fixture()
def http(image_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=image_server.url, timeout=120) as c:
        yield c


def decode(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


def png(size: tuple[int, int], mode: str = "RGB", color: object = "red") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")  # type: ignore[arg-type]
    return buf.getvalue()


# -- generations ----------------------------------------------------------------------------


def test_b64_png_at_requested_size(client: openai.OpenAI) -> None:
    resp = client.images.generate(model=MODEL, prompt="a red fox", size="96x64",
                                  response_format="b64_json", extra_body=FAST)
    assert resp.created > 0 and len(resp.data) == 1
    assert decode(resp.data[0].b64_json).size == (96, 64)
    assert resp.data[0].url is None


def test_default_size_is_the_models(client: openai.OpenAI) -> None:
    resp = client.images.generate(model=MODEL, prompt="a cat", response_format="b64_json")
    assert decode(resp.data[0].b64_json).size == (64, 64)  # UNet sample 8 x VAE factor 8
    resp = client.images.generate(model=DISK_MODEL, prompt="a cat")  # b64_json by config
    assert decode(resp.data[0].b64_json).size == (96, 64)


def test_n_gives_distinct_images(client: openai.OpenAI) -> None:
    resp = client.images.generate(model=MODEL, prompt="two owls", n=2, size="64x64",
                                  response_format="b64_json", quality="hd", style="vivid",
                                  user="u1", extra_body=FAST)
    first, second = (decode(d.b64_json) for d in resp.data)
    assert first.size == second.size == (64, 64)
    assert first.tobytes() != second.tobytes()


def test_same_seed_same_bytes(client: openai.OpenAI) -> None:
    def make(seed: int) -> str | None:
        extra = {**FAST, "seed": seed, "negative_prompt": "blurry", "guidance_scale": 3.0}
        return client.images.generate(model=MODEL, prompt="a lighthouse", size="64x64",
                                      response_format="b64_json",
                                      extra_body=extra).data[0].b64_json

    assert make(7) == make(7)
    assert make(7) != make(8)


def test_output_format_jpeg(http: httpx.Client) -> None:
    resp = http.post("/v1/images/generations", json={
        "model": MODEL, "prompt": "x", "output_format": "jpeg", "response_format": "b64_json",
        **FAST})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["output_format"] == "jpeg" and body["size"] == "64x64"
    assert Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"]))).format == "JPEG"


@pytest.mark.parametrize("model", [MODEL, DISK_MODEL])
def test_url_is_fetchable_then_expires(client: openai.OpenAI, http: httpx.Client,
                                       model: str) -> None:
    resp = client.images.generate(model=model, prompt="a boat", size="64x64",
                                  response_format="url", extra_body=FAST)
    url = resp.data[0].url
    assert url is not None and url.startswith(str(http.base_url).rstrip("/") + "/v1/images/")
    got = httpx.get(url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(got.content)).size == (64, 64)
    time.sleep(TTL + 0.2)
    assert_openai_error(httpx.get(url), 404, code="image_not_found")


def test_url_is_the_default_format(client: openai.OpenAI) -> None:
    resp = client.images.generate(model=MODEL, prompt="a tree", extra_body=FAST)
    assert resp.data[0].url is not None and resp.data[0].b64_json is None


def test_unknown_image_id_is_404(http: httpx.Client) -> None:
    for image_id in ("img-doesnotexistdoesnotexist", "nope", "img-..."):
        assert_openai_error(http.get(f"/v1/images/{image_id}"), 404, code="image_not_found")
    assert_openai_error(http.get("/v1/images/..%2F..%2Fetc%2Fpasswd"), 404)


# -- edits ----------------------------------------------------------------------------------


def test_edit_without_mask_keeps_input_size(client: openai.OpenAI) -> None:
    resp = client.images.edit(model=MODEL, image=("in.png", png((96, 64)), "image/png"),
                              prompt="make it blue", response_format="b64_json",
                              extra_body={**FAST, "strength": 0.5, "seed": 1})
    assert decode(resp.data[0].b64_json).size == (96, 64)


def test_edit_with_mask_keeps_input_size(client: openai.OpenAI) -> None:
    mask = png((96, 64), "RGBA", (0, 0, 0, 0))
    resp = client.images.edit(model=MODEL, image=("in.png", png((96, 64)), "image/png"),
                              mask=("mask.png", mask, "image/png"), prompt="a moon", n=2,
                              response_format="b64_json", extra_body=FAST)
    assert [decode(d.b64_json).size for d in resp.data] == [(96, 64), (96, 64)]


def test_edit_with_size_resizes(client: openai.OpenAI) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (100, 60), "green").save(jpeg, format="JPEG")
    resp = client.images.edit(model=MODEL, image=("in.jpg", jpeg.getvalue(), "image/jpeg"),
                              prompt="x", size="64x64", response_format="b64_json",
                              extra_body=FAST)
    assert decode(resp.data[0].b64_json).size == (64, 64)


def edit(http: httpx.Client, files: dict[str, tuple[str, bytes, str]],
         **fields: str) -> httpx.Response:
    data = {"model": MODEL, "prompt": "x", "num_inference_steps": "2", **fields}
    return http.post("/v1/images/edits", data=data, files=files)


@pytest.mark.parametrize(("files", "fields", "param", "code"), [
    ({"image": ("a.png", b"\x89PNG\r\n\x1a\n garbage", "image/png")}, {}, "image",
     "invalid_image"),
    ({"image": ("a.txt", b"hello, not an image", "text/plain")}, {}, "image", "invalid_image"),
    ({"image": ("a.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif")}, {}, "image",
     None),
    ({"image": ("a.png", png((300, 300)), "image/png")}, {}, "image", "image_too_large"),
    ({"image": ("a.png", png((60, 60)), "image/png")}, {}, "image", "invalid_size"),
    ({"image": ("a.png", png((64, 64)), "image/png"),
      "mask": ("m.png", png((32, 32), "L"), "image/png")}, {}, "mask", "invalid_mask"),
    ({"image": ("a.png", png((64, 64)), "image/png")}, {"size": "65x64"}, "size",
     "invalid_size"),
    ({"image": ("a.png", png((64, 64)), "image/png")}, {"n": "0"}, "n", None),
    ({"image": ("a.png", png((64, 64)), "image/png")}, {"prompt": " "}, "prompt", None),
    ({"image": ("a.png", png((64, 64)), "image/png")}, {"strength": "0.1"}, "strength", None),
    ({"mask": ("m.png", png((64, 64)), "image/png")}, {}, "image", None),
])
def test_bad_edits_are_400(http: httpx.Client, files: dict[str, tuple[str, bytes, str]],
                           fields: dict[str, str], param: str, code: str | None) -> None:
    assert_openai_error(edit(http, files, **fields), 400, param=param, code=code)


def test_edits_must_be_multipart(http: httpx.Client) -> None:
    resp = http.post("/v1/images/edits", json={"model": MODEL, "prompt": "x"})
    assert_openai_error(resp, 400)


def test_variations_are_a_clear_400(client: openai.OpenAI, http: httpx.Client) -> None:
    for resp in (http.post("/v1/images/variations",
                           files={"image": ("a.png", png((64, 64)), "image/png")},
                           data={"model": MODEL}),
                 http.post("/v1/images/variations", json={"model": MODEL})):
        err = assert_openai_error(resp, 400)
        assert err["type"] == "invalid_request_error" and err["param"] is None
        assert "variations are not supported" in err["message"]
    with pytest.raises(openai.BadRequestError):
        client.images.create_variation(model=MODEL, image=("a.png", png((64, 64))))


def test_edit_upload_over_body_limit_is_413(http: httpx.Client) -> None:
    blob = b"\x89PNG" + b"\0" * (1024 * 1024 + 10)
    assert_openai_error(edit(http, {"image": ("a.png", blob, "image/png")}), 413)


# -- bad requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"size": "big"}, "size", "invalid_size"),
    ({"size": "64x"}, "size", "invalid_size"),
    ({"size": "100x64"}, "size", "invalid_size"),
    ({"size": "1024x1024"}, "size", "invalid_size"),
    ({"size": "32x32"}, "size", "invalid_size"),
    ({"n": 0}, "n", None),
    ({"n": 5}, "n", None),
    ({"prompt": ""}, "prompt", None),
    ({"prompt": "   "}, "prompt", None),
    ({"num_inference_steps": 5000}, "num_inference_steps", None),
    ({"response_format": "gif"}, "response_format", None),
    ({"quality": "ultra"}, "quality", None),
    ({"stream": True}, "stream", None),
])
def test_bad_generation_is_400(http: httpx.Client, body: dict[str, object], param: str,
                               code: str | None) -> None:
    resp = http.post("/v1/images/generations",
                     json={"model": MODEL, "prompt": "a dog", **FAST, **body})
    assert_openai_error(resp, 400, param=param, code=code)


def test_missing_prompt_is_400(http: httpx.Client) -> None:
    assert_openai_error(http.post("/v1/images/generations", json={"model": MODEL}), 400,
                        param="prompt")


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.images.generate(model="dall-e-9", prompt="x")
    assert info.value.code == "model_not_found"


def test_chat_model_is_400(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model=CHAT_MODEL, prompt="x")
    assert info.value.code == "model_not_supported"
    resp = edit(http, {"image": ("a.png", png((64, 64)), "image/png")}, model=CHAT_MODEL)
    assert_openai_error(resp, 400, param="model", code="model_not_supported")
    resp = http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(resp, 400, code="model_not_supported")


def test_server_keeps_serving_after_bad_input(client: openai.OpenAI) -> None:
    resp = client.images.generate(model=MODEL, prompt="still here", size="64x64",
                                  response_format="b64_json", extra_body=FAST)
    assert decode(resp.data[0].b64_json).size == (64, 64)
    assert client.models.retrieve(MODEL).id == MODEL


# -- overload and disconnects ---------------------------------------------------------------


def slow_body(model: str, steps: int) -> dict[str, object]:
    return {"model": model, "prompt": "slow", "size": "256x256", "num_inference_steps": steps,
            "response_format": "b64_json"}


def wait_idle(http: httpx.Client, model: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while metric(http, "modelserve_image_running", model) > 0:
        assert time.monotonic() < deadline, "generation still running"
        time.sleep(0.05)


def test_disconnect_stops_generation(image_server: LiveServer, http: httpx.Client) -> None:
    cancelled = metric(http, "modelserve_image_cancelled_total", MODEL)
    steps = metric(http, "modelserve_image_steps_total", MODEL)
    images = metric(http, "modelserve_image_images_total", MODEL)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{image_server.url}/v1/images/generations", json=slow_body(MODEL, 2000),
                   timeout=1.5)
    wait_idle(http, MODEL)
    assert metric(http, "modelserve_image_cancelled_total", MODEL) == cancelled + 1
    ran = metric(http, "modelserve_image_steps_total", MODEL) - steps
    assert 0 < ran < 2000
    assert metric(http, "modelserve_image_images_total", MODEL) == images


def test_full_queue_is_429(image_server: LiveServer, http: httpx.Client) -> None:
    done: list[int] = []
    slow = threading.Thread(target=lambda: done.append(httpx.post(
        f"{image_server.url}/v1/images/generations", json=slow_body(BUSY_MODEL, 60),
        timeout=60).status_code))
    slow.start()
    deadline = time.monotonic() + 10
    while metric(http, "modelserve_image_running", BUSY_MODEL) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    resp = http.post("/v1/images/generations", json={"model": BUSY_MODEL, "prompt": "x",
                                                     **FAST})
    assert_openai_error(resp, 429, code="queue_full")
    assert resp.headers["retry-after"] == "1"
    slow.join()
    assert done == [200]
    assert metric(http, "modelserve_image_generations_total", BUSY_MODEL) >= 1


def test_bench_images_command(image_server: LiveServer, tiny_sd: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from modelserve.cli import main

    out = tmp_path / "bench.jsonl"
    main(["bench", "images", "--url", image_server.url, "--model", MODEL, "--model-dir",
          str(tiny_sd), "--size", "64x64", "--steps", "2", "--rounds", "2", "--json-out",
          str(out)])
    row = json.loads(out.read_text())
    assert row["rounds"] == 2 and row["server_ms"] > 0 and row["direct_ms"] > 0
    assert "overhead vs pipeline" in capsys.readouterr().out


def test_a_killed_worker_is_503_and_its_urls_outlive_the_restart(
        image_server: LiveServer, client: openai.OpenAI, http: httpx.Client) -> None:
    made = client.images.generate(model=BUSY_MODEL, prompt="kept", response_format="url",
                                  extra_body=FAST)
    url = made.data[0].url
    assert url is not None
    before = httpx.get(url)
    assert before.status_code == 200
    pid = admin_models(http)[BUSY_MODEL]["pid"]
    answers: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: answers.append(httpx.post(
        f"{image_server.url}/v1/images/generations", json=slow_body(BUSY_MODEL, 2000),
        timeout=60)))
    slow.start()
    deadline = time.monotonic() + 10
    while metric(http, "modelserve_image_running", BUSY_MODEL) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    slow.join(timeout=30)
    err = assert_openai_error(answers[0], 503, code="model_unavailable")
    assert "SIGKILL" in err["message"]
    wait_state(http, BUSY_MODEL, "ready", timeout=60)
    after = httpx.get(url)
    assert after.status_code == 200 and after.content == before.content
