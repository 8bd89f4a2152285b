"""What a model's failures look like to the routes, whatever its kind and wherever it runs.

Raised by runtimes, fronts and the worker handle; `api/errors.py` turns each into the one
answer every route gives for it (429 or 503 with `Retry-After`), and a stream's error event.
"""

from __future__ import annotations


class QueueFull(Exception):
    """Too many requests are waiting for this model (429: retry shortly)."""


class WorkerDied(RuntimeError):
    """The model's worker process ended (a crash, a kill, or it stopped answering and was
    killed) while this call or stream was in flight (503: the model restarts)."""


class WorkerStalled(RuntimeError):
    """The worker stopped reading its pipe and the messages queued for it reached their cap
    (503: it is killed and restarted once its liveness timeout passes)."""


class StateLost(RuntimeError):
    """The worker no longer holds what this request needed (an image's encoding, evicted
    from its cache between the encode and the start): 503, retry."""


class WorkerLoadError(RuntimeError):
    """The worker could not build the model (its error), or died while loading."""


# What a stream's error output carries (StepOutput.error_code), so a failure that crossed the
# pipe as data is answered like the exception it stands for.
UNAVAILABLE = "model_unavailable"
BUSY = "queue_full"
