import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelserve.cli.serve import _is_loopback
from modelserve.config import Settings
from modelserve.config_sections import ApiKey
from modelserve.security import KeyRing, _duration
from modelserve.sources import ConfigError


def test_keys_plain_hashed_file_and_env(tmp_path: Path) -> None:
    secret = tmp_path / "keys.yaml"
    secret.write_text("- key: from-file-key-1\n  scope: admin\n  name: filed\n")
    lines = tmp_path / "keys.txt"
    lines.write_text("# one per line\nline-key-000001\n\n")
    settings = Settings(api_key="env-admin-key-1", security={
        "api_keys": [{"key": "plain-key-0001"},
                     {"sha256": hashlib.sha256(b"hashed-key-001").hexdigest().upper()}],
        "api_keys_file": str(secret)})
    ring = KeyRing.from_settings(settings)
    assert ring.enabled
    plain = ring.authenticate("plain-key-0001")
    assert plain is not None and plain.scope == "user" and plain.id.startswith("key-")
    assert "plain" not in plain.id
    hashed = ring.authenticate("hashed-key-001")
    assert hashed is not None and hashed.scope == "user"
    filed = ring.authenticate("from-file-key-1")
    assert filed is not None and (filed.id, filed.scope) == ("filed", "admin")
    env = ring.authenticate("env-admin-key-1")
    assert env is not None and env.scope == "admin"
    assert ring.authenticate("plain-key-0002") is None and ring.authenticate("") is None
    by_lines = KeyRing.from_settings(Settings(security={"api_keys_file": str(lines)}))
    assert by_lines.authenticate("line-key-000001") is not None
    assert not KeyRing([]).enabled


def test_bad_keys_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        ApiKey(key="some-key-1234", sha256="0" * 64)
    with pytest.raises(ValidationError, match="exactly one"):
        ApiKey()
    with pytest.raises(ValidationError, match="64 hex"):
        ApiKey(sha256="abc")
    with pytest.raises(ConfigError, match="cannot read"):
        KeyRing.from_settings(Settings(security={"api_keys_file": str(tmp_path / "none")}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- scope: admin\n")
    with pytest.raises(ConfigError, match="invalid api_keys_file"):
        KeyRing.from_settings(Settings(security={"api_keys_file": str(bad)}))


def test_reset_durations_in_openai_format() -> None:
    assert [_duration(s) for s in (0.12, 1.0, 59.6, 61, 360)] == [
        "120ms", "1s", "1m0s", "1m1s", "6m0s"]


def test_loopback_hosts() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("example.com")
