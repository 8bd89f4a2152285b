"""What a worker's failures look like to the API process."""


class WorkerDied(RuntimeError):
    """The worker process ended while this call or stream was in flight."""


class WorkerLoadError(RuntimeError):
    """The worker could not build the model (its error), or died while loading."""
