"""Pure image-input logic: data URLs, Pillow checks, the fetch address policy."""

from __future__ import annotations

import base64

import pytest

from modelserve.images.address_policy import (
    check_addresses,
    check_host,
    host_matches,
    is_public_address,
)
from modelserve.images.data_url import parse_data_url
from modelserve.images.decode import ImageLimits, decode_image
from modelserve.images.errors import ImageError
from tests.fixtures.images import bomb_png, data_url, image_bytes

LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=50_000, max_side=4096)


def test_data_url_roundtrip_and_media_type() -> None:
    parsed = parse_data_url("data:image/PNG;base64,aGVsbG8=", 100)
    assert parsed.media_type == "image/png" and parsed.data == b"hello"
    assert parse_data_url("data:;base64,aGVs\nbG8=", 100).data == b"hello"
    assert parse_data_url("data:image/jpeg;name=x.jpg;base64,aGVsbG8=", 100).data == b"hello"


@pytest.mark.parametrize(("url", "says"), [
    ("http://x/y.png", "not a data: URL"),
    ("data:image/png;base64", "no comma"),
    ("data:image/png,aGVsbG8=", "base64-encoded"),
    ("data:image/png;base64,@@@@", "not valid base64"),
    ("data:image/png;base64,aGVsbG8", "not valid base64"),  # bad padding
    ("data:image/png;base64,", "empty"),
    ("data:text/html;base64,aGVsbG8=", "not an image"),
    ("data:image png;base64,aGVsbG8=", "malformed media type"),
])
def test_bad_data_urls(url: str, says: str) -> None:
    with pytest.raises(ImageError, match=says):
        parse_data_url(url, 100)


def test_data_url_size_limit_before_and_after_decoding() -> None:
    payload = base64.b64encode(b"x" * 1000).decode()
    with pytest.raises(ImageError, match="limit of 10 bytes") as info:
        parse_data_url(f"data:image/png;base64,{payload}", 10)
    assert info.value.code == "image_too_large"
    with pytest.raises(ImageError, match="limit of 999 bytes"):
        parse_data_url(f"data:image/png;base64,{payload}", 999)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_decode_formats_to_rgb(fmt: str) -> None:
    image = decode_image(image_bytes(fmt, size=(20, 10)), LIMITS)
    assert (image.width, image.height) == (20, 10) and len(image.rgb) == 20 * 10 * 3
    assert len(image.digest) == 64


def test_digest_follows_pixels() -> None:
    a, b = image_bytes("PNG", seed=1), image_bytes("PNG", seed=2)
    assert decode_image(a, LIMITS).digest == decode_image(a, LIMITS).digest
    assert decode_image(a, LIMITS).digest != decode_image(b, LIMITS).digest


@pytest.mark.parametrize(("data", "says", "code"), [
    (b"not an image", "not an image", "unsupported_image_format"),
    (image_bytes("TIFF"), "TIFF is not supported", "unsupported_image_format"),
    (image_bytes("PNG")[:150], "corrupt or truncated", "invalid_image"),
    (bomb_png(), "100000x1 = 100000 pixels", "image_too_large"),
    (bomb_png(5000, 2), "side over the limit", "image_too_large"),
])
def test_decode_refuses(data: bytes, says: str, code: str) -> None:
    limits = ImageLimits(max_bytes=1 << 20, max_pixels=50_000, max_side=4096)
    if "side" in says:
        limits = ImageLimits(max_bytes=1 << 20, max_pixels=1 << 30, max_side=4096)
    with pytest.raises(ImageError, match=says) as info:
        decode_image(data, limits)
    assert info.value.code == code


def test_decode_byte_limit() -> None:
    with pytest.raises(ImageError, match="limit of 10 bytes"):
        decode_image(image_bytes("PNG"), ImageLimits(10, 100, 100))


def test_data_url_fixture_is_parseable() -> None:
    assert parse_data_url(data_url(b"abc"), 10).data == b"abc"


@pytest.mark.parametrize(("host", "patterns", "ok"), [
    ("images.example.com", ["images.example.com"], True),
    ("IMAGES.example.com.", ["images.example.com"], True),
    ("cdn.example.com", ["*.example.com"], True),
    ("example.com", ["*.example.com"], False),
    ("evil-example.com", ["*.example.com"], False),
    ("anything.org", ["*"], True),
    ("other.com", ["images.example.com"], False),
    ("[::1]", ["::1"], True),
    ("x.com", [], False),
])
def test_host_matches(host: str, patterns: list[str], ok: bool) -> None:
    assert host_matches(host, patterns) is ok


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.216.34", True),
    ("2606:2800:220:1:248:1893:25c8:1946", True),
    ("127.0.0.1", False),
    ("10.1.2.3", False),
    ("172.16.0.1", False),
    ("192.168.1.1", False),
    ("169.254.169.254", False),
    ("100.100.100.200", False),
    ("100.64.0.1", False),
    ("0.0.0.0", False),
    ("224.0.0.1", False),
    ("::1", False),
    ("fe80::1%eth0", False),
    ("fd00:ec2::254", False),
    ("::ffff:127.0.0.1", False),
    ("::ffff:93.184.216.34", True),
    ("not-an-ip", False),
])
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_check_host_and_addresses() -> None:
    check_host("a.example.com", ["*.example.com"])
    with pytest.raises(ImageError, match="allowlist") as info:
        check_host("b.other.com", ["*.example.com"])
    assert info.value.code == "image_url_not_allowed"
    check_addresses("a.example.com", ["93.184.216.34"], [])
    with pytest.raises(ImageError, match=r"non-public address \(10\.0\.0\.1\)"):
        check_addresses("a.example.com", ["93.184.216.34", "10.0.0.1"], [])
    check_addresses("store.internal", ["10.0.0.1"], ["store.internal"])  # trusted
    with pytest.raises(ImageError, match="does not resolve"):
        check_addresses("a.example.com", [], [])
