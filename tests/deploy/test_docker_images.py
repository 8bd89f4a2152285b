"""The CPU image and the compose stack built and run for real, on a private Docker engine
(tests/fixtures/docker_engine.py): the image is built from a Debian 12 base made with
debootstrap (no registry is reachable here), with the host's extra CA certificates and a
wheelhouse holding the llama.cpp wheel the host build made (so llama.cpp is not compiled
twice); it runs as non-root on a read-only root filesystem, passes its HEALTHCHECK and answers
chat and embeddings; the compose stack (2 replicas, Redis, nginx) serves through nginx and
holds a per-key rate limit across the replicas.

Skipped, with the reason, only where no engine can start (not root, dockerd failing); with
CI set, a missing program is a failure, since .ci/run installs them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import free_port
from tests.deploy.conftest import DEPLOY, ROOT
from tests.fixtures.docker_engine import Engine, EngineUnavailable, private_engine

pytestmark = pytest.mark.slow

API_KEY = "docker-test-key-0123456789"
IMAGE = "modelserve-test/cpu:latest"
BASE_IMAGE, BASE_TAG = "modelserve-test/debian", "bookworm"
BASE = f"{BASE_IMAGE}:{BASE_TAG}"
NGINX = "modelserve-test/nginx:sid"
REDIS = "modelserve-test/redis:bookworm"
PROJECT = "modelservetest"
MODELS_VOLUME = f"{PROJECT}_models"  # the compose project's volume, shared with the run test
CHAT, EMBED = "smollm2-135m-instruct", "all-minilm-l6-v2"  # deploy/docker/models.yaml
UID = "10001"
MAX_IMAGE_BYTES = 2_500_000_000


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    try:
        with private_engine() as running:
            yield running
            # Layers of images built before this run's (tags moved on) go; the cache stays.
            running.run("image", "prune", "-f", check=False)
    except EngineUnavailable as exc:
        if os.environ.get("CI") and "missing" in str(exc):
            pytest.fail(f"no Docker engine: {exc}")
        pytest.skip(f"no Docker engine can start here: {exc}")


def wheelhouse_wheels() -> list[Path]:
    """The host build's llama-cpp-python wheel (make exports its folder) and the pinned torch
    where pip finds it on this machine's disk (PIP_FIND_LINKS): the image's pip prefers them."""
    wheels: list[Path] = []
    llama = os.environ.get("MODELSERVE_LLAMA_WHEELS")
    if llama:
        wheels += Path(llama).glob("llama_cpp_python-*.whl")
    torch = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert torch is not None
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        wheels += Path(folder).glob(f"torch-{torch[1]}*-cp311-*.whl")
    return wheels


def build_context(dest: Path) -> Path:
    """What .dockerignore lets through, plus the build inputs: extra CAs and the wheelhouse."""
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.whl", "*.crt")
    shutil.copytree(ROOT / "src", dest / "src", ignore=ignore)
    shutil.copytree(DEPLOY / "docker", dest / "deploy" / "docker", ignore=ignore)
    for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy2(cert, dest / "deploy" / "docker" / "ca-certificates" / cert.name)
    for wheel in wheelhouse_wheels():
        shutil.copy2(wheel, dest / "deploy" / "docker" / "wheelhouse" / wheel.name)
    return dest


@pytest.fixture(scope="module")
def cpu_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CPU image on a plain Debian 12 base: Python 3.11 comes from apt (setup-base.sh)."""
    engine.debian_image(BASE, "bookworm")
    context = build_context(tmp_path_factory.mktemp("docker-context"))
    local_torch = any(w.name.startswith("torch-") for w in wheelhouse_wheels())
    engine.run("build", "-f", "deploy/docker/Dockerfile", "-t", IMAGE,
               "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", f"BASE_TAG={BASE_TAG}",
               # The PyTorch index is out of reach here; torch comes from the wheelhouse.
               *(["--build-arg", "TORCH_INDEX_URL="] if local_torch else []),
               str(context), timeout=1800)
    return IMAGE


@pytest.fixture(scope="module")
def models_volume(engine: Engine, cpu_image: str) -> str:
    """The image's own fetch-models fills the volume (kept between runs, so a no-op then)."""
    out = engine.run("run", "--rm", "--read-only", "--tmpfs", "/tmp", "-v",
                     f"{MODELS_VOLUME}:/models", "--entrypoint", "fetch-models", cpu_image,
                     "/models", timeout=900)
    assert "fetch-models: /models" in out.stdout
    return MODELS_VOLUME


def in_container(engine: Engine, image: str, script: str) -> str:
    return engine.run("run", "--rm", "--entrypoint", "sh", image, "-c", script).stdout


def test_image_is_lean_and_unprivileged(engine: Engine, cpu_image: str) -> None:
    size = int(engine.run("image", "inspect", "-f", "{{.Size}}", cpu_image).stdout)
    assert size < MAX_IMAGE_BYTES, f"image is {size / 1e9:.2f} GB"
    user = engine.run("image", "inspect", "-f", "{{.Config.User}}", cpu_image).stdout.strip()
    assert user == f"{UID}:{UID}"
    # No compiler or build tools, no pip or apt caches, no wheelhouse in the runtime stage.
    leftovers = in_container(engine, cpu_image, (
        "for p in gcc cc c++ g++ cmake make git; do command -v $p; done; "
        "ls -d /wheelhouse /wheels /src /root/.cache /home/modelserve/.cache 2>/dev/null; "
        "find / -xdev -type d -path '*/.cache/pip' 2>/dev/null; "
        "ls /var/lib/apt/lists | grep -v -x -e lock -e partial; true"))
    assert leftovers.strip() == ""
    # What it does need: Python from Debian's apt (the base had none), espeak-ng, the CAs.
    found = in_container(engine, cpu_image, "readlink -f $(command -v python3); "
                         "command -v espeak-ng; ls /etc/ssl/certs/ca-certificates.crt; id -u")
    assert found.split() == ["/usr/bin/python3.11", "/usr/bin/espeak-ng",
                             "/etc/ssl/certs/ca-certificates.crt", UID]


def wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} not ready in {timeout} s")


def check_chat_and_embeddings(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=API_KEY, max_retries=0,
                           timeout=120)
    chat = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8,
        temperature=0)
    assert chat.choices[0].message.content and chat.usage and chat.usage.completion_tokens > 0
    embedding = client.embeddings.create(model=EMBED, input="a container answers")
    assert len(embedding.data[0].embedding) == 384


def test_container_runs_read_only_as_non_root(engine: Engine, cpu_image: str,
                                              models_volume: str) -> None:
    name, port = f"modelserve-test-{uuid.uuid4().hex[:8]}", free_port()
    engine.run("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               "-v", f"{models_volume}:/models:ro", "-e", f"MODELSERVE_API_KEY={API_KEY}",
               # The image's HEALTHCHECK command, probed every 2 s instead of 30 s.
               "--health-interval", "2s", "-p", f"127.0.0.1:{port}:8000", cpu_image)
    try:
        engine.wait_healthy(name, timeout=180)
        wait_ready(f"http://127.0.0.1:{port}/ready", timeout=180)
        check_chat_and_embeddings(f"http://127.0.0.1:{port}")
        assert engine.run("exec", name, "id", "-u").stdout.strip() == UID
        denied = engine.run("exec", name, "touch", "/opt/modelserve/x", check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
        engine.run("exec", name, "touch", "/tmp/x")  # caches live on the tmpfs
    finally:
        engine.run("rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def service_images(engine: Engine, tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[str, str]:
    """Stand-ins for the compose file's public Redis and nginx images. The nginx config needs
    nginx >= 1.27.3 (`server ... resolve`), newer than Debian 12's, so nginx comes from
    Debian unstable."""
    base = engine.debian_image(BASE, "bookworm")
    engine.debian_image(NGINX, "sid", include=["nginx-light"],
                        cmd='["nginx", "-g", "daemon off;"]')
    if not engine.has_image(REDIS):
        recipe = (f"FROM {base}\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive "
                  "apt-get install -y --no-install-recommends redis-server "
                  "&& rm -rf /var/lib/apt/lists/*\n")
        context = tmp_path_factory.mktemp("redis-image")
        (context / "Dockerfile").write_text(recipe)
        engine.run("build", "-t", REDIS, str(context))
    return {"REDIS_IMAGE": REDIS, "NGINX_IMAGE": NGINX}


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("no compose implementation (Debian's docker-compose) installed")


def test_compose_stack_shares_a_rate_limit_across_replicas(
        engine: Engine, cpu_image: str, models_volume: str,
        service_images: dict[str, str]) -> None:
    port, limit = free_port(), 8
    env = {**engine.env(), **service_images, "MODELSERVE_IMAGE": cpu_image,
           "MODELSERVE_API_KEY": API_KEY, "MODELSERVE_RPM": str(limit),
           "MODELSERVE_PUBLISH": f"127.0.0.1:{port}"}
    compose = [*compose_command(), "-p", PROJECT, "-f", str(DEPLOY / "docker-compose.yml")]

    def run(*args: str, timeout: float = 600) -> str:
        out = subprocess.run([*compose, *args], env=env, capture_output=True, text=True,
                             timeout=timeout)
        assert out.returncode == 0, f"compose {args[0]} failed:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    try:
        run("up", "-d", "--no-build")
        replicas = run("ps", "-q", "modelserve").split()
        assert len(replicas) == 2  # deploy.replicas
        probe = ("import urllib.request as u; "
                 "u.urlopen('http://127.0.0.1:8000/ready', timeout=4)")
        for replica in replicas:
            engine.wait_healthy(replica, timeout=240)
            deadline = time.monotonic() + 180
            while engine.run("exec", replica, "python", "-c", probe,
                             check=False).returncode != 0:
                assert time.monotonic() < deadline, engine.logs(replica)[-3000:]
                time.sleep(1)
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(base_url + "/ready", timeout=60)
        check_chat_and_embeddings(base_url)  # two requests against the key's limit
        statuses = [httpx.post(base_url + "/v1/embeddings", timeout=60,
                               headers={"Authorization": f"Bearer {API_KEY}"},
                               json={"model": EMBED, "input": f"request {i}"}).status_code
                    for i in range(2 * limit)]
        # One Redis counts for both replicas: the key gets `limit` requests a minute in all
        # (each replica counting alone would pass nearly all of them). One either way: the
        # sliding window weighs the previous minute's count if the test straddles two.
        assert set(statuses) == {200, 429}, statuses
        assert abs(statuses.count(200) - (limit - 2)) <= 1, statuses
        served = [engine.logs(r).count('"path": "/v1/embeddings"') for r in replicas]
        assert all(count > 0 for count in served), served  # nginx spread the requests
    finally:
        out = subprocess.run([*compose, "logs", "--tail", "20"], env=env, capture_output=True,
                             text=True, timeout=120)
        print(out.stdout[-6000:])
        subprocess.run([*compose, "down", "--remove-orphans", "-t", "20"], env=env,
                       capture_output=True, timeout=300)
