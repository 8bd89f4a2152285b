"""/v1/embeddings through HTTP with the official openai SDK and the real all-MiniLM-L6-v2."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import httpx
import numpy as np
import openai
import pytest
from sentence_transformers import SentenceTransformer

from modelserve.sources import PackageSource
from tests.conftest import EMBED_INT8, EMBED_MODEL, EMBED_MRL, EMBED_ST, MINILM
from tests.helpers import assert_openai_error, metric

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.",
             "The new movie is awesome.", "A man is riding a horse.",
             "Two dogs play in the snow near a frozen lake."]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    model = SentenceTransformer(str(PackageSource(**MINILM).resolve()), device="cpu")
    return np.asarray(model.encode(SENTENCES), dtype=np.float32)


def vectors(resp: openai.types.CreateEmbeddingResponse) -> np.ndarray:
    assert [d.index for d in resp.data] == list(range(len(resp.data)))
    return np.asarray([d.embedding for d in resp.data], dtype=np.float32)


@pytest.mark.parametrize("model", [EMBED_MODEL, EMBED_ST])
def test_vectors_equal_sentence_transformers(client: openai.OpenAI, reference: np.ndarray,
                                             model: str) -> None:
    resp = client.embeddings.create(model=model, input=SENTENCES)
    got = vectors(resp)
    assert np.abs(got - reference).max() < 1e-4
    assert (got * reference).sum(axis=1).min() >= 0.9999
    assert resp.usage.prompt_tokens == resp.usage.total_tokens > len(SENTENCES)


def test_int8_is_close(client: openai.OpenAI, reference: np.ndarray) -> None:
    got = vectors(client.embeddings.create(model=EMBED_INT8, input=SENTENCES))
    assert (got * reference).sum(axis=1).min() >= 0.99


def test_semantics(client: openai.OpenAI) -> None:
    food, bread, movie = vectors(client.embeddings.create(model=EMBED_MODEL,
                                                          input=SENTENCES[:3]))
    assert food @ bread > food @ movie and food @ bread > bread @ movie


def test_base64_equals_float(client: openai.OpenAI, http: httpx.Client) -> None:
    floats = vectors(client.embeddings.create(model=EMBED_MODEL, input="hello world"))[0]
    raw = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": "hello world",
                                            "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(decoded, floats)


def test_token_id_input(client: openai.OpenAI, http: httpx.Client) -> None:
    from tokenizers import Tokenizer

    text = vectors(client.embeddings.create(model=EMBED_MODEL, input=SENTENCES[0]))[0]
    path = PackageSource(**MINILM).resolve() / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # the packaged tokenizer.json pads to 128
    ids = tokenizer.encode(SENTENCES[0]).ids
    one = vectors(client.embeddings.create(model=EMBED_MODEL, input=ids))[0]
    many = vectors(client.embeddings.create(model=EMBED_MODEL, input=[ids, ids]))
    assert np.allclose(one, text, atol=1e-6) and np.allclose(many[1], text, atol=1e-6)


def test_dimensions_truncate_and_renormalize(client: openai.OpenAI) -> None:
    full = vectors(client.embeddings.create(model=EMBED_MRL, input="a cat"))[0]
    small = vectors(client.embeddings.create(model=EMBED_MRL, input="a cat", dimensions=64))[0]
    assert small.shape == (64,) and abs(np.linalg.norm(small) - 1) < 1e-5
    assert np.allclose(small, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)


def test_concurrent_requests_are_batched_and_exact(async_client: Callable[[], openai.AsyncOpenAI],
                                                   client: openai.OpenAI,
                                                   http: httpx.Client) -> None:
    texts = [f"sentence number {i} about {SENTENCES[i % 5]}" for i in range(64)]
    alone = {t: vectors(client.embeddings.create(model=EMBED_MODEL, input=t))[0]
             for t in texts[:8]}
    batches_before = metric(http, "modelserve_embedding_batches_total", EMBED_MODEL)
    inputs_before = metric(http, "modelserve_embedding_batch_inputs_total", EMBED_MODEL)

    async def scenario() -> list[np.ndarray]:
        async with async_client() as aclient:
            async def one(i: int) -> np.ndarray:
                # every 8th request carries several inputs: split across batches, reassembled
                batch = [texts[i], *texts[:3]] if i % 8 == 0 else texts[i]
                return vectors(await aclient.embeddings.create(model=EMBED_MODEL, input=batch))
            return list(await asyncio.gather(*(one(i) for i in range(64))))

    results = asyncio.run(scenario())
    for i, got in enumerate(results):
        if texts[i] in alone:
            assert np.allclose(got[0], alone[texts[i]], atol=1e-5)
        if i % 8 == 0:
            assert got.shape[0] == 4 and np.allclose(got[1], alone[texts[0]], atol=1e-5)
    batches = metric(http, "modelserve_embedding_batches_total", EMBED_MODEL) - batches_before
    inputs = metric(http, "modelserve_embedding_batch_inputs_total", EMBED_MODEL) - inputs_before
    assert inputs == 64 + 8 * 3 and batches < inputs  # some batch held more than one input
    assert metric(http, "modelserve_embedding_max_batch_size", EMBED_MODEL) > 1


def test_truncate_extra(http: httpx.Client) -> None:
    long_text = "word " * 300
    resp = http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": long_text,
                                             "truncate": True})
    assert resp.status_code == 200 and resp.json()["usage"]["prompt_tokens"] == 256


BAD = [
    ({"model": EMBED_MODEL, "input": []}, 400, "input", None),
    ({"model": EMBED_MODEL, "input": ""}, 400, "input", None),
    ({"model": EMBED_MODEL, "input": ["ok", ""]}, 400, "input[1]", None),
    ({"model": EMBED_MRL, "input": ["x"] * 9}, 400, "input", "too_many_inputs"),
    ({"model": EMBED_MODEL, "input": ["x"] * 2049}, 400, "input", "too_many_inputs"),
    ({"model": EMBED_MODEL, "input": [101, 999999]}, 400, "input", None),
    ({"model": EMBED_MODEL, "input": [[101], []]}, 400, "input[1]", None),
    ({"model": EMBED_MODEL, "input": "word " * 300}, 400, "input", "context_length_exceeded"),
    ({"model": EMBED_MODEL, "input": ["a", "word " * 300]}, 400, "input[1]",
     "context_length_exceeded"),
    ({"model": EMBED_MODEL, "input": 42}, 400, "input", None),
    ({"model": EMBED_MODEL, "input": [1.5]}, 400, "input", None),
    ({"model": EMBED_MODEL, "input": "x", "encoding_format": "hex"}, 400, "encoding_format",
     None),
    ({"model": EMBED_MODEL, "input": "x", "dimensions": 64}, 400, "dimensions", None),
    ({"model": EMBED_MRL, "input": "x", "dimensions": 1000}, 400, "dimensions", None),
    ({"model": EMBED_MRL, "input": "x", "dimensions": 0}, 400, "dimensions", None),
    ({"model": "nope", "input": "x"}, 404, "model", "model_not_found"),
    ({"model": "smollm2", "input": "x"}, 400, "model", "model_not_supported"),
]


@pytest.mark.parametrize(("body", "status", "param", "code"), BAD)
def test_bad_embedding_requests(http: httpx.Client, body: dict[str, object], status: int,
                                param: str, code: str | None) -> None:
    err = assert_openai_error(http.post("/v1/embeddings", json=body), status, code=code)
    assert err["param"] is not None and err["param"].startswith(param), err


def test_embedding_model_refused_for_chat(http: httpx.Client) -> None:
    resp = http.post("/v1/chat/completions", json={
        "model": EMBED_MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(resp, 400, param="model", code="model_not_supported")
    models = {m["id"]: m["kind"] for m in http.get("/v1/models").json()["data"]}
    assert models[EMBED_MODEL] == "embeddings" and models["smollm2"] == "chat"
