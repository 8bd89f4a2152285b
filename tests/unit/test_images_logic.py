"""Pure image logic: size strings and limits, the url stores' TTL, upload decoding, config."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from modelserve.api.errors import APIError
from modelserve.api.image_uploads import decode_upload, to_mask
from modelserve.config import ModelSpec
from modelserve.kinds.options import DiffusionOptions
from modelserve.runtimes.image_sizes import (
    SizeError,
    SizeLimits,
    check_size,
    parse_size,
    resolve_size,
)
from modelserve.runtimes.image_store import DiskImageStore, MemoryImageStore, make_store

LIMITS = SizeLimits(default=(512, 512), min_width=64, min_height=64, max_width=1024,
                    max_height=768)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("text", "size"), [
    ("512x512", (512, 512)), ("768X512", (768, 512)), (" 64 x 128 ", (64, 128)),
])
def test_parse_size(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "512", "512x", "x512", "axb", "512*512", "-64x64",
                                  "1.5x2", "512x512x3", "9999999x1"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(SizeError, match="WIDTHxHEIGHT"):
        parse_size(text)


def test_check_size_limits() -> None:
    assert check_size(1024, 768, LIMITS) == (1024, 768)
    with pytest.raises(SizeError, match="multiples of 8"):
        check_size(100, 64, LIMITS)
    with pytest.raises(SizeError, match="width must be between 64 and 1024"):
        check_size(1032, 64, LIMITS)
    with pytest.raises(SizeError, match="height must be between 64 and 768"):
        check_size(64, 1024, LIMITS)
    with pytest.raises(SizeError, match="width"):
        check_size(56, 64, LIMITS)


def test_resolve_size_defaults() -> None:
    assert resolve_size(None, LIMITS) == (512, 512)
    assert resolve_size("auto", LIMITS) == (512, 512)
    assert resolve_size("256x128", LIMITS) == (256, 128)


def test_memory_store_ttl() -> None:
    clock = Clock()
    store = MemoryImageStore(ttl=60, max_bytes=1 << 20, clock=clock)
    first = store.put(b"one", "png")
    clock.now += 30
    second = store.put(b"two", "jpeg")
    got = store.get(first)
    assert got is not None and got.data == b"one" and got.media_type == "image/png"
    clock.now += 30  # first is now exactly 60 s old: expired
    assert store.get(first) is None
    got = store.get(second)
    assert got is not None and got.media_type == "image/jpeg" and len(store) == 1
    clock.now += 31
    assert store.get(second) is None and len(store) == 0
    assert store.get("img-unknown") is None


def test_memory_store_byte_cap_drops_oldest() -> None:
    store = MemoryImageStore(ttl=60, max_bytes=10)
    ids = [store.put(b"x" * 4, "png") for _ in range(3)]
    assert store.get(ids[0]) is None
    assert store.get(ids[1]) is not None and store.get(ids[2]) is not None
    big = store.put(b"y" * 50, "png")  # one image over the cap is still kept, alone
    assert store.get(big) is not None and len(store) == 1


def test_ids_are_unique_and_unguessable() -> None:
    store = MemoryImageStore(ttl=60, max_bytes=1 << 20)
    ids = {store.put(b"x", "png") for _ in range(100)}
    assert len(ids) == 100 and all(len(i) > 30 for i in ids)


def test_disk_store_ttl_and_names(tmp_path: Path) -> None:
    clock = Clock()
    store = DiskImageStore(tmp_path / "urls", ttl=60, clock=clock)
    image_id = store.put(b"data", "webp")
    path = tmp_path / "urls" / f"{image_id}.webp"
    assert path.read_bytes() == b"data"
    clock.now += 59
    got = store.get(image_id)
    assert got is not None and got.data == b"data" and got.media_type == "image/webp"
    for bad in ("../etc/passwd", "img-../../x", "img-short", image_id + ".webp",
                "img-" + "a" * 30):
        assert store.get(bad) is None
    clock.now += 1
    assert store.get(image_id) is None and not path.exists()


def test_disk_store_sweeps_expired_files(tmp_path: Path) -> None:
    clock = Clock()
    store = DiskImageStore(tmp_path, ttl=60, clock=clock)
    old = store.put(b"1", "png")
    clock.now += 61
    new = store.put(b"2", "png")  # a put sweeps what has expired
    assert not (tmp_path / f"{old}.png").exists() and (tmp_path / f"{new}.png").exists()


def test_make_store(tmp_path: Path) -> None:
    assert isinstance(make_store("memory", 10, 1024), MemoryImageStore)
    assert isinstance(make_store(str(tmp_path / "d"), 10, 1024), DiskImageStore)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


NOISE = encoded(Image.effect_noise((30, 30), 64), "PNG")


def test_decode_upload() -> None:
    image = decode_upload(encoded(Image.new("RGB", (16, 8)), "PNG"), "image", 1000)
    assert image.size == (16, 8)
    for data, code in [(b"", None), (b"not an image", "invalid_image"),
                       (encoded(Image.new("RGB", (8, 8)), "BMP"), "invalid_image_format"),
                       (encoded(Image.new("RGB", (64, 64)), "PNG"), "image_too_large"),
                       (NOISE[: len(NOISE) // 2], "invalid_image")]:
        with pytest.raises(APIError) as info:
            decode_upload(data, "mask", 1000)
        assert info.value.status == 400 and info.value.param == "mask"
        assert info.value.code == code


def test_to_mask_follows_openai_alpha_rule() -> None:
    rgba = Image.new("RGBA", (2, 1), (255, 255, 255, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # transparent: edit here
    mask = to_mask(rgba)
    assert mask.mode == "L" and list(mask.getdata()) == [255, 0]
    gray = Image.new("L", (2, 1), 200)
    assert list(to_mask(gray).getdata()) == [200, 200]


def test_images_spec_defaults() -> None:
    spec = ModelSpec(name="sd", kind="images", source="/x")
    assert spec.runtime == "diffusers" and spec.options_as(DiffusionOptions).default_steps == 20
    spec = ModelSpec.model_validate({"name": "sd", "runtime": "diffusers", "source": "/x",
                                     "options": {"max_n": 2, "default_size": "768x512"}})
    assert spec.kind == "images" and spec.options_as(DiffusionOptions).max_n == 2
    with pytest.raises(ValidationError):
        ModelSpec.model_validate({"name": "sd", "kind": "images", "source": "/x",
                                  "options": {"context_size": 512}})
    with pytest.raises(ValidationError, match="cannot serve"):
        ModelSpec.model_validate({"name": "sd", "kind": "chat", "runtime": "diffusers",
                                  "source": "/x"})
    with pytest.raises(ValidationError):
        DiffusionOptions(default_size="big")
