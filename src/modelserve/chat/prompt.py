"""Chat messages -> prompt: content parts, the template, and images for vision models.

Image parts become the projector's media marker in the templated text, and their images are
loaded (data: URL, or fetched when the server allows it), checked, decoded and encoded before
the prompt reaches the engine; every problem with one is a 400 naming its `param` (the
client's name for the part). The cheap part (template, URL checks) and the costly one (fetch,
decode, encode) are separate steps of the request pipeline (api/pipeline.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelserve.api.errors import APIError, bad_request
from modelserve.chat.tools import ToolPlan, template_tool_calls, without_tool_template
from modelserve.chat.turn import Message, Text
from modelserve.config import ImageSettings
from modelserve.engine.sequence import MultimodalPrompt
from modelserve.images.data_url import parse_data_url
from modelserve.images.decode import DecodedImage, ImageLimits, decode_image
from modelserve.images.errors import ImageError
from modelserve.images.fetch import ImageFetcher
from modelserve.kinds.chat import ChatModel
from modelserve.runtimes.chat_template import ChatTemplateError
from modelserve.runtimes.mtmd import PromptError

ImageRef = tuple[str, str]  # (param, url)
Count = Callable[[str, int], None]  # (stage, how many)
NO_IMAGES = "This model does not accept images (image_url content)."


def template_messages(messages: list[Message], marker: str | None
                      ) -> tuple[list[dict[str, Any]], list[ImageRef]]:
    """Messages as the template takes them, with `marker` where each image goes (in order),
    and the images' URLs; `marker` None means the model takes no images."""
    out, images = [], []
    for msg in messages:
        if isinstance(msg.content, list):
            pieces = []
            for part in msg.content:
                if isinstance(part, Text):
                    _check_text(part.text, marker, part.where)
                    pieces.append(part.text)
                elif marker is None:
                    raise bad_request(NO_IMAGES, param=f"{msg.where}.content")
                else:
                    pieces.append(marker)
                    images.append((part.where, part.url))
            content = "\n".join(pieces)
        else:
            content = msg.content
            _check_text(content, marker, f"{msg.where}.content")
        entry: dict[str, Any] = {**msg.extra, "role": msg.role, "content": content}
        if msg.name is not None:
            entry["name"] = msg.name
        if msg.tool_call_id is not None:
            entry["tool_call_id"] = msg.tool_call_id
        if msg.tool_calls:
            entry["tool_calls"] = template_tool_calls(msg)
        out.append(entry)
    return out, images


def with_tools(runtime: ChatModel, messages: list[dict[str, Any]],
               tools: ToolPlan | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Messages and the `tools` argument for this model's template: a template that renders
    tools gets them as they are; for one that does not, the tools, calls and results are
    written into the messages."""
    offered = tools.tools if tools is not None else None
    if runtime.template.supports_tools:
        return messages, offered
    return without_tool_template(messages, offered), None


def _check_text(text: str, marker: str | None, param: str) -> None:
    # The marker in user text would make mtmd pair an image with the wrong place.
    if marker is not None and marker in text:
        raise bad_request(f"Text content must not contain {marker!r}, this model's image "
                          "placeholder; send images as image_url parts.", param=param)


def render_prompt(runtime: ChatModel, messages: list[Message]) -> list[int]:
    """Text-only rendering (also what /tokenize uses)."""
    try:
        return runtime.render_chat(*with_tools(runtime, template_messages(messages, None)[0],
                                               None))
    except ChatTemplateError as exc:
        raise bad_request(str(exc), param="messages") from None


@dataclass
class ChatPrompt:
    """A chat request's prompt in two stages. `plan_chat_prompt` (cheap, before admission and
    the cache lookup) renders the template and checks the image URLs; `load_images` (after
    them) fetches, decodes and encodes the images, so a refused or cached request does none
    of that work."""

    templated: list[dict[str, Any]]
    text_tokens: list[int]  # the whole prompt for text; for vision, markers in place of images
    images: list[tuple[str, ImageSource]] = field(default_factory=list)  # (param, source)
    tools: list[dict[str, Any]] | None = None  # for the template
    variables: dict[str, Any] | None = None  # extra template variables (reasoning_effort, ...)


@dataclass(frozen=True)
class ImageSource:
    data: bytes | None = None  # a data: URL's bytes
    url: str | None = None  # or a remote URL, fetched in `load_images`


def plan_chat_prompt(runtime: ChatModel, messages: list[Message],
                     settings: ImageSettings, tools: ToolPlan | None = None,
                     variables: dict[str, Any] | None = None) -> ChatPrompt:
    templated, refs = template_messages(messages, runtime.image_marker)
    templated, offered = with_tools(runtime, templated, tools)
    if len(refs) > settings.max_images:
        raise bad_request(f"A request may carry at most {settings.max_images} images; "
                          f"this one has {len(refs)}.", param="messages",
                          code="too_many_images")
    try:
        tokens = runtime.render_chat(templated, offered, variables)
    except ChatTemplateError as exc:
        raise bad_request(str(exc), param="messages") from None
    return ChatPrompt(templated, tokens, [(param, _source(param, url, settings))
                                          for param, url in refs], offered, variables)


def _source(param: str, url: str, settings: ImageSettings) -> ImageSource:
    try:
        if url.startswith("data:"):
            return ImageSource(data=parse_data_url(url, settings.max_bytes).data)
        if url.partition(":")[0].lower() in ("http", "https"):
            if not settings.allow_remote:
                raise ImageError("remote image URLs are disabled on this server "
                                 "(images.allow_remote); send the image as a data: URL",
                                 code="image_url_not_allowed")
            return ImageSource(url=url)
        raise ImageError("the URL must be a data: URL (base64) or an http(s) URL")
    except ImageError as exc:
        raise _invalid(param, exc) from None


async def load_images(runtime: ChatModel, prompt: ChatPrompt, settings: ImageSettings,
                      counter: Count) -> MultimodalPrompt:
    """The prompt with its images fetched, decoded and encoded (`counter(stage, n)` counts
    fetches and encodes as they start)."""
    if not prompt.images:
        return MultimodalPrompt(prompt.text_tokens)
    images = [await _load(param, source, settings, counter) for param, source in prompt.images]
    counter("encode", len(images))
    try:
        return await runtime.render_multimodal(prompt.templated, images, prompt.tools,
                                               prompt.variables)
    except (ChatTemplateError, PromptError) as exc:
        raise bad_request(str(exc), param="messages") from None


async def _load(param: str, source: ImageSource, settings: ImageSettings,
                counter: Count) -> DecodedImage:
    try:
        data = source.data
        if data is None:
            assert source.url is not None
            counter("fetch", 1)
            data = await ImageFetcher(settings).fetch(source.url)
        limits = ImageLimits(settings.max_bytes, settings.max_pixels, settings.max_side)
        return await asyncio.to_thread(decode_image, data, limits)
    except ImageError as exc:
        raise _invalid(param, exc) from None


def _invalid(param: str, exc: ImageError) -> APIError:
    return bad_request(f"Invalid image in {param}: {exc.message}", param=param, code=exc.code)
