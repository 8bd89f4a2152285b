"""Vision chat end to end: the real SmolLM2 GGUF with a tiny random-weight llava projector.

The answers are meaningless; what is checked is that the whole path runs (decode, check,
encode, evaluate into the KV cache between engine steps, generate, count) and that bad images
are clear 400s that leave the server serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.conftest import SMOLLM2, LiveServer
from tests.fixtures.images import bomb_png, data_url, image_bytes
from tests.fixtures.tiny_mmproj import TinyMmproj, write_tiny_mmproj
from tests.helpers import (
    NO_EOS,
    PNG,
    QuietHandler,
    admin_models,
    assert_openai_error,
    http_host,
    image,
    text,
    user,
)

VISION = "smollm2-vision"
TEXT = "smollm2-text"
IMAGE_TOKENS = TinyMmproj().image_tokens
MAX_PIXELS = 50_000


JPEG = data_url(image_bytes("JPEG", seed=2), "image/jpeg")


def write_config(path: Path, mmproj: Path, images: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "server": {"max_request_bytes": 1024 * 1024, "images": images},
        "models": [
            {"name": VISION, "source": SMOLLM2,
             "options": {"context_size": 512, "parallel": 6, "batch_size": 64,
                         "mmproj": str(mmproj)}},
            {"name": TEXT, "source": SMOLLM2, "options": {"context_size": 512, "parallel": 2}},
        ],
    }))
    return path


@pytest.fixture(scope="module")
def mmproj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_mmproj(tmp_path_factory.mktemp("mmproj") / "tiny-mmproj.gguf")


@pytest.fixture(scope="module")
def vision_server(tmp_path_factory: pytest.TempPathFactory, mmproj: Path
                  ) -> Iterator[LiveServer]:
    config = write_config(tmp_path_factory.mktemp("vision") / "models.yaml", mmproj,
                          {"max_pixels": MAX_PIXELS, "max_bytes": 256 * 1024})
    with LiveServer(config) as live:
        yield live


@pytest.fixture(scope="module")
def vclient(vision_server: LiveServer) -> openai.OpenAI:
    return vision_server.openai()


@pytest.fixture()
def vhttp(vision_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vision_server.url, timeout=120) as c:
        yield c


def chat(client: openai.OpenAI, messages: list[dict[str, Any]], **kw: Any) -> Any:
    return client.chat.completions.create(model=VISION, messages=messages,  # type: ignore
                                          temperature=0, **{"max_tokens": 8, **kw})


def prompt_len(http: httpx.Client, content: str) -> int:
    resp = http.post("/tokenize", json={"model": VISION,
                                        "messages": [{"role": "user", "content": content}]})
    return int(resp.json()["count"])


@pytest.mark.parametrize("url", [PNG, JPEG], ids=["png", "jpeg"])
def test_image_gives_text_and_counts_image_tokens(vclient: openai.OpenAI,
                                                  vhttp: httpx.Client, url: str) -> None:
    resp = chat(vclient, user(text("What is in this picture?"), image(url)),
                logit_bias=NO_EOS)
    assert resp.choices[0].message.content
    assert resp.usage is not None and resp.usage.completion_tokens == 8
    # The image part becomes a marker after a newline; the marker becomes the image's tokens.
    assert resp.usage.prompt_tokens == prompt_len(vhttp, "What is in this picture?\n") \
        + IMAGE_TOKENS


def test_two_images_in_one_message_and_across_turns(vclient: openai.OpenAI) -> None:
    one = chat(vclient, user(text("Compare"), image(PNG)))
    two = chat(vclient, user(text("Compare"), image(PNG), image(JPEG)), logit_bias=NO_EOS)
    assert two.choices[0].message.content
    assert two.usage.prompt_tokens >= one.usage.prompt_tokens + IMAGE_TOKENS
    turns = chat(vclient, [*user(text("First"), image(PNG)),
                           {"role": "assistant", "content": "A picture."},
                           *user(text("And this one?"), image(JPEG))], logit_bias=NO_EOS)
    assert turns.choices[0].message.content
    assert turns.usage.prompt_tokens > 2 * IMAGE_TOKENS


def test_stream_with_image_reports_usage(vclient: openai.OpenAI) -> None:
    stream = vclient.chat.completions.create(
        model=VISION, messages=user(image(PNG), text("Describe it.")),  # type: ignore
        max_tokens=6, temperature=0, stream=True, stream_options={"include_usage": True},
        logit_bias=NO_EOS)
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].usage.prompt_tokens > IMAGE_TOKENS


def test_image_and_text_streams_run_together_and_text_stays_exact(vision_server: LiveServer
                                                                 ) -> None:
    topics = ["cats", "ships", "rivers", "kings"]
    texts = [[{"role": "user", "content": f"Tell me a short story about {t}."}] for t in topics]
    images = [user(text(f"Story {i} about this picture:"),
                   image(data_url(image_bytes("PNG", seed=10 + i)))) for i in range(4)]

    async def stream(client: openai.AsyncOpenAI, messages: list[dict[str, Any]]) -> str:
        out = await client.chat.completions.create(
            model=VISION, messages=messages, max_tokens=24, temperature=0,  # type: ignore
            stream=True, logit_bias=NO_EOS)
        return "".join([c.choices[0].delta.content or "" async for c in out if c.choices])

    async def scenario() -> tuple[list[str], list[str], list[str], list[str]]:
        async with openai.AsyncOpenAI(base_url=f"{vision_server.url}/v1", api_key="unused",
                                      max_retries=0, timeout=300) as client:
            solo_text = [await stream(client, m) for m in texts]
            solo_image = [await stream(client, m) for m in images]
            mixed = await asyncio.gather(*(stream(client, m) for pair in zip(texts, images,
                                                                             strict=True)
                                           for m in pair))
        return solo_text, solo_image, list(mixed[0::2]), list(mixed[1::2])

    solo_text, solo_image, together_text, together_image = asyncio.run(scenario())
    assert all(solo_text) and all(together_image)
    assert together_text == solo_text
    assert together_image == solo_image


def test_prefix_reuse_stops_at_a_different_image(vclient: openai.OpenAI) -> None:
    prompt = [text("Look closely at the picture"), image(PNG), text("What colour is it?")]
    first = chat(vclient, user(*prompt))
    again = chat(vclient, user(*prompt))
    other = chat(vclient, user(prompt[0], image(JPEG), prompt[2]))
    assert again.usage.prompt_tokens == first.usage.prompt_tokens == other.usage.prompt_tokens
    cached_again = again.usage.prompt_tokens_details.cached_tokens
    cached_other = other.usage.prompt_tokens_details.cached_tokens
    # The same image is served from the KV cache; a different one is not, only the text
    # before it is.
    assert cached_again == again.usage.prompt_tokens - 1
    text_after = 10  # "What colour is it?" plus the assistant header, at least
    assert 0 < cached_other <= other.usage.prompt_tokens - IMAGE_TOKENS - text_after
    assert again.choices[0].message.content == first.choices[0].message.content


BAD_IMAGES = [
    ("data:image/png;base64,not*base64!", "base64"),
    (data_url(image_bytes("PNG")[:200]), "corrupt or truncated"),
    (data_url(bomb_png()), "pixels"),
    (data_url(b"just some text, not an image at all"), "not an image"),
    (data_url(b"GIF89a"), "not an image"),
    ("data:text/plain;base64,aGVsbG8=", "not an image"),
    ("data:image/png,rawbytes", "base64"),
    ("ftp://example.com/x.png", "data: URL"),
    ("https://example.com/cat.png", "disabled"),
]


@pytest.mark.parametrize(("url", "says"), BAD_IMAGES)
def test_bad_images_are_400_and_server_keeps_serving(vhttp: httpx.Client, vclient: openai.OpenAI,
                                                     url: str, says: str) -> None:
    body = {"model": VISION, "messages": user(text("What is this?"), image(url))}
    err = assert_openai_error(vhttp.post("/v1/chat/completions", json=body), 400,
                              param="messages[0].content[1].image_url")
    assert says in err["message"], err
    assert chat(vclient, user(text("Hi"), image(PNG))).choices[0].message.content is not None


def test_other_bad_vision_requests(vhttp: httpx.Client) -> None:
    body = {"model": TEXT, "messages": user(text("What is this?"), image(PNG))}
    err = assert_openai_error(vhttp.post("/v1/chat/completions", json=body), 400,
                              param="messages[0].content")
    assert "does not accept images" in err["message"]
    body = {"model": VISION, "messages": user(text("sneaky <__media__> marker"), image(PNG))}
    assert_openai_error(vhttp.post("/v1/chat/completions", json=body), 400,
                        param="messages[0].content[0].text")
    body = {"model": VISION, "messages": user(*[image(PNG)] * 17)}
    assert_openai_error(vhttp.post("/v1/chat/completions", json=body), 400, param="messages",
                        code="too_many_images")
    body = {"model": VISION, "messages": user(image(PNG)),
            "max_tokens": 600}
    assert_openai_error(vhttp.post("/v1/chat/completions", json=body), 400,
                        code="context_length_exceeded")


# -- remote image URLs, on a second server that allows them -------------------------------


class _Images(QuietHandler):
    def do_GET(self) -> None:
        port = self.server.server_address[1]
        routes: dict[str, tuple[int, dict[str, str], bytes]] = {
            "/cat.png": (200, {"Content-Type": "image/png"}, image_bytes("PNG", seed=3)),
            "/to-loopback": (302, {"Location": f"http://127.0.0.1:{port}/cat.png"}, b""),
            "/to-cat": (302, {"Location": "/cat.png"}, b""),
            "/huge.png": (200, {"Content-Type": "image/png"}, b"x" * 300_000),
        }
        self.reply(*routes.get(self.path, (404, {}, b"not found")))


@pytest.fixture(scope="module")
def image_host() -> Iterator[int]:
    """A local image server; the fetching server reaches it only by the name `localhost`,
    which its config trusts to resolve to a private (loopback) address."""
    with http_host(_Images) as port:
        yield port


@pytest.fixture(scope="module")
def fetching_server(tmp_path_factory: pytest.TempPathFactory, mmproj: Path
                    ) -> Iterator[LiveServer]:
    config = write_config(tmp_path_factory.mktemp("fetching") / "models.yaml", mmproj, {
        "allow_remote": True, "max_bytes": 256 * 1024, "fetch_timeout_s": 10,
        "allowed_hosts": ["localhost", "127.0.0.1", "169.254.169.254", "*.example.com"],
        "trusted_private_hosts": ["localhost"]})
    with LiveServer(config) as live:
        yield live


def test_remote_image_from_an_allowed_host(fetching_server: LiveServer, image_host: int) -> None:
    client = fetching_server.openai()
    for path in ("/cat.png", "/to-cat"):
        resp = chat(client, user(text("What is this?"),
                                 image(f"http://localhost:{image_host}{path}")))
        assert resp.usage.prompt_tokens > IMAGE_TOKENS


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1:{port}/cat.png", "non-public address (127.0.0.1)"),
    ("http://169.254.169.254/latest/meta-data/", "non-public address (169.254.169.254)"),
    ("http://localhost:{port}/to-loopback", "non-public address (127.0.0.1)"),
    ("http://elsewhere.org/cat.png", "allowlist"),
    ("http://localhost:{port}/missing.png", "HTTP 404"),
    ("http://localhost:{port}/huge.png", "limit of 262144 bytes"),
])
def test_remote_image_refusals(fetching_server: LiveServer, image_host: int, url: str,
                               says: str) -> None:
    body = {"model": VISION, "messages": user(text("What is this?"),
                                              image(url.format(port=image_host)))}
    with httpx.Client(base_url=fetching_server.url, timeout=60) as http:
        err = assert_openai_error(http.post("/v1/chat/completions", json=body), 400,
                                  param="messages[0].content[1].image_url")
    assert says in err["message"], err


def test_an_image_crosses_the_pipe_once_for_all_choices(vclient: openai.OpenAI,
                                                         vhttp: httpx.Client) -> None:
    """The image goes to the worker once (to be encoded); its embeddings stay there, for
    each of the `n` sequences, and never come back to the API process."""
    def pipe() -> tuple[int, int]:
        model = admin_models(vhttp)[VISION]
        return model["pipe_bytes_sent"], model["pipe_bytes_received"]

    picture = image_bytes("PNG", size=(48, 40), seed=22)
    rgb_bytes = 48 * 40 * 3
    embeddings_bytes = IMAGE_TOKENS * 576 * 4  # SmolLM2's width, float32
    sent, received = pipe()
    answer = chat(vclient, user(text("Describe"), image(data_url(picture))), n=4,
                  logit_bias=NO_EOS, max_tokens=4)
    assert len(answer.choices) == 4 and all(c.message.content for c in answer.choices)
    sent_now, received_now = pipe()
    assert sent_now - sent < rgb_bytes + embeddings_bytes // 2
    assert received_now - received < embeddings_bytes // 2


def test_an_image_block_through_the_anthropic_sdk(vision_server: LiveServer) -> None:
    client = anthropic.Anthropic(base_url=vision_server.url, api_key="unused", max_retries=0)
    data = PNG.partition("base64,")[2]
    message = client.messages.create(model=VISION, max_tokens=6, messages=[{
        "role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": data}},
            {"type": "text", "text": "Describe it."}]}])
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.input_tokens > IMAGE_TOKENS
