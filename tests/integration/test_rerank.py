"""/v1/rerank (and /rerank, /v2/rerank) through HTTP: MiniLM as a bi-encoder for ranking
quality, and a tiny random-weight cross-encoder for the cross-encoder path."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import MINILM, LiveServer, serve
from tests.fixtures.tiny_cross_encoder import build_tiny_cross_encoder
from tests.helpers import assert_openai_error, metric

BI = "minilm-rerank"
CROSS = "tiny-cross"
SMALL = "minilm-rerank-small"

CASES = [
    ("What is the capital of France?",
     ["Berlin is the capital of Germany.", "Paris is the capital and largest city of France.",
      "The Eiffel tower was finished in 1889.", "Bananas are rich in potassium."], 1),
    ("How do I bake bread?",
     ["Stock markets fell sharply on Monday.", "Knead the dough, let it rise, then bake it "
      "in a hot oven.", "Bread has been eaten for thousands of years."], 1),
    ("Which animal is the fastest on land?",
     ["The cheetah can run faster than any other land animal.", "Whales are mammals.",
      "Turtles are slow."], 0),
    ("python list sort",
     ["Use sorted(items) or items.sort() to order a list in Python.",
      "Pythons are large snakes found in Africa and Asia.", "Java has ArrayList."], 0),
]


@pytest.fixture(scope="module")
def rerank_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cross = build_tiny_cross_encoder(tmp_path_factory.mktemp("cross") / "model")
    with serve(tmp_path_factory.mktemp("rerank"), {"models": [
        {"name": BI, "kind": "rerank", "runtime": "bi-encoder", "source": MINILM},
        {"name": SMALL, "kind": "rerank", "runtime": "bi-encoder", "source": MINILM,
         "options": {"max_documents": 3}},
        {"name": CROSS, "kind": "rerank", "source": str(cross),
         "options": {"max_batch_wait_ms": 5}},
    ]}) as live:
        yield live


def rerank(server: LiveServer, path: str = "/v1/rerank", **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


def test_the_relevant_document_comes_first(rerank_server: LiveServer) -> None:
    for query, documents, relevant in CASES:
        resp = rerank(rerank_server, model=BI, query=query, documents=documents)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        results = body["results"]
        assert results[0]["index"] == relevant, (query, results)
        assert results[0]["document"]["text"] == documents[relevant]
        scores = [r["relevance_score"] for r in results]
        assert scores == sorted(scores, reverse=True) and len(results) == len(documents)
        assert body["usage"]["total_tokens"] > len(documents)


def test_top_n_return_documents_and_the_other_paths(rerank_server: LiveServer) -> None:
    query, documents, relevant = CASES[0]
    objects = [{"text": d} for d in documents]
    for path in ("/v1/rerank", "/rerank", "/v2/rerank"):
        body = rerank(rerank_server, path, model=BI, query=query, documents=objects,
                      top_n=2, return_documents=False).json()
        assert body["results"][0]["index"] == relevant
        assert len(body["results"]) == 2 and "document" not in body["results"][0]
    everything = rerank(rerank_server, model=BI, query=query, documents=documents,
                        top_n=10).json()
    assert len(everything["results"]) == len(documents)


def test_a_thousand_documents_in_one_request(rerank_server: LiveServer) -> None:
    documents = [f"Note {i}: the meeting about budget item {i} moved to room {i % 7}."
                 for i in range(999)] + ["Paris is the capital of France."]
    for model in (BI, CROSS):
        resp = rerank(rerank_server, model=model, query="capital of France",
                      documents=documents, top_n=5)
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["results"]) == 5
    best = rerank(rerank_server, model=BI, query="capital of France",
                  documents=documents, top_n=1).json()["results"][0]
    assert best["index"] == 999


def test_the_cross_encoder_scores_pairs(rerank_server: LiveServer) -> None:
    query, documents, _ = CASES[1]
    first = rerank(rerank_server, model=CROSS, query=query, documents=documents).json()
    scores = [r["relevance_score"] for r in first["results"]]
    assert all(0 < s < 1 for s in scores) and scores == sorted(scores, reverse=True)
    assert sorted(r["index"] for r in first["results"]) == [0, 1, 2]
    # The document's tokens are read together with the query's: another query, other scores.
    other = rerank(rerank_server, model=CROSS, query="stock markets",
                   documents=documents).json()
    by_index = {r["index"]: r["relevance_score"] for r in other["results"]}
    assert any(abs(by_index[r["index"]] - r["relevance_score"]) > 1e-6
               for r in first["results"])


def test_concurrent_requests_share_batches(rerank_server: LiveServer) -> None:
    http = httpx.Client(base_url=rerank_server.url)
    before = metric(http, "modelserve_rerank_batches_total", CROSS)
    before_docs = metric(http, "modelserve_rerank_documents_total", CROSS)

    async def one(client: httpx.AsyncClient, i: int) -> dict[str, Any]:
        resp = await client.post("/v1/rerank", json={
            "model": CROSS, "query": f"query {i}", "documents": [f"doc {i} {j}"
                                                                 for j in range(8)]})
        assert resp.status_code == 200
        result: dict[str, Any] = resp.json()
        return result

    async def main() -> None:
        async with httpx.AsyncClient(base_url=rerank_server.url, timeout=120) as client:
            await asyncio.gather(*(one(client, i) for i in range(16)))

    asyncio.run(main())
    assert metric(http, "modelserve_rerank_documents_total", CROSS) - before_docs == 128
    assert metric(http, "modelserve_rerank_batches_total", CROSS) - before < 16


def test_bad_rerank_requests_are_refused_by_name(rerank_server: LiveServer) -> None:
    ok = {"model": BI, "query": "q", "documents": ["a", "b"]}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**ok, "documents": []}, 400, "documents"),
        ({**ok, "query": " "}, 400, "query"),
        ({**ok, "top_n": 0}, 400, "top_n"),
        ({**ok, "documents": [{"text": "a", "title": "t"}]}, 400, "documents[0].title"),
        ({**ok, "rank_fields": ["title"]}, 400, "rank_fields"),
        ({**ok, "model": SMALL, "documents": ["a"] * 4}, 400, "documents"),
        ({**ok, "model": "nope"}, 404, "model"),
        ({k: v for k, v in ok.items() if k != "query"}, 400, "query"),
    ]
    for body, status, param in cases:
        assert_openai_error(rerank(rerank_server, **body), status, param=param)


def test_rerank_models_are_listed(rerank_server: LiveServer) -> None:
    cards = {m["id"]: m for m in httpx.get(f"{rerank_server.url}/v1/models").json()["data"]}
    assert cards[BI]["kind"] == "rerank" and cards[BI]["scoring"] == "bi-encoder"
    assert cards[CROSS]["scoring"] == "cross-encoder"
