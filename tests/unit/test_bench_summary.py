import json
from pathlib import Path

from modelserve.loadgen.chat import LevelResult, markdown, percentile
from modelserve.loadgen.summary import summarise


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


def row(label: str, conc: int, tps: float) -> LevelResult:
    return LevelResult(label, conc, 4, 0, 100, 1.0, tps, 10.0, 20.0, 5.0, 9.0, [])


def test_markdown_and_summary(tmp_path: Path) -> None:
    rows = [row("modelserve", 8, 200.0), row("peer", 8, 100.0), row("modelserve", 8, 220.0)]
    assert "| modelserve | 8 | 4 | 0 | 200.0 |" in markdown(rows)
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r.__dict__) for r in rows) + "\n")
    table = summarise(path)
    assert "| modelserve | 8 | 2 | 210.0 | - |" in table
    assert "| peer | 8 | 1 | 100.0 | 2.10x |" in table


def test_embeddings_summary(tmp_path: Path) -> None:
    from modelserve.loadgen.embeddings import EmbedResult
    from modelserve.loadgen.summary import summarise_embeddings

    rows = [EmbedResult("worker", 64, 1, 8, 100, 0, 900.0, 5.0, 9.0),
            EmbedResult("inline", 64, 1, 8, 100, 0, 1000.0, 5.0, 9.0),
            EmbedResult("worker", 64, 1, 8, 100, 0, 1100.0, 5.0, 9.0)]
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(json.dumps(r.__dict__) for r in rows) + "\n")
    table = summarise_embeddings(path, "worker")
    assert "| worker | 64 | 1 | 8 | 1000.0 | - | 900 / 1100 |" in table
    assert "| inline | 64 | 1 | 8 | 1000.0 | 1.00x | 1000 |" in table


def test_surfaces_are_divided_by_chat_per_client_and_level(tmp_path: Path) -> None:
    from modelserve.loadgen.summary import summarise_surfaces

    rows = [("chat/httpx", 1, 100.0), ("chat/httpx", 1, 110.0), ("messages/httpx", 1, 99.0),
            ("messages/httpx", 1, 108.0), ("chat/aiohttp", 8, 400.0),
            ("ollama/aiohttp", 8, 396.0)]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps({"label": label, "concurrency": level,
                                        "tokens_per_s": tps}) + "\n"
                            for label, level, tps in rows))
    table = summarise_surfaces(path)
    assert "| messages | httpx | 1 | 103.5 | 0.986 | 99 / 108 |" in table
    assert "| ollama | aiohttp | 8 | 396.0 | 0.990 | 396 |" in table
    assert "CPU" not in table  # no samples of the API process's CPU: no such table


def test_the_api_processs_cpu_per_token(tmp_path: Path) -> None:
    from modelserve.loadgen.summary import summarise_surfaces

    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps({"label": label, "concurrency": 1, "tokens_per_s": 1.0,
                                        "completion_tokens": tokens}) + "\n"
                            for label, tokens in [("chat/httpx", 1000), ("messages/httpx", 500),
                                                  ("messages/httpx", 500)]))
    (tmp_path / "s.jsonl.cpu").write_text(
        '{"label": "chat/httpx", "api_cpu_s": 20e0, "tick": 100}\n'
        '{"label": "messages/httpx", "api_cpu_s": 22e0, "tick": 100}\n')
    table = summarise_surfaces(path)
    assert "| chat | httpx | 200 | 1.000 |" in table  # 0.2 s over 1000 tokens
    assert "| messages | httpx | 220 | 1.100 |" in table


def test_each_surface_reads_its_own_stream() -> None:
    from modelserve.loadgen.surfaces import SURFACES

    chat = SURFACES["chat"].read
    assert chat('data: {"choices": [{"delta": {"content": "Hi"}}]}').text
    assert chat("data: [DONE]").done
    assert chat('data: {"choices": [], "usage": {"completion_tokens": 7}}').tokens == 7
    responses = SURFACES["responses"].read
    assert responses('data: {"type": "response.output_text.delta", "delta": "Hi"}').text
    done = responses('data: {"type": "response.completed", "response": '
                     '{"usage": {"output_tokens": 5}}}')
    assert done.done and done.tokens == 5
    assert responses('data: {"type": "response.failed"}').error
    messages = SURFACES["messages"].read
    assert messages("event: content_block_delta") == messages("")
    assert messages('data: {"type": "content_block_delta", "delta": {"text": "Hi"}}').text
    assert messages('data: {"type": "message_delta", "usage": {"output_tokens": 3}}').tokens == 3
    assert messages('data: {"type": "message_stop"}').done
    ollama = SURFACES["ollama"].read
    assert ollama('{"message": {"content": "Hi"}, "done": false}').text
    assert ollama('{"done": true, "eval_count": 4}').tokens == 4
    assert ollama('{"error": "boom"}').error == "boom"
