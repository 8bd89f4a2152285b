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
