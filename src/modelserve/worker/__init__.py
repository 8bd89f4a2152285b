"""Every loaded model runs in a worker process of its own (`child`), driven from the API
process through a `WorkerHandle` (`handle`) over one pipe carrying `protocol` messages.

A native fault, an OOM kill or a `kill -9` ends only that worker: its in-flight requests fail
with a clean error and the registry restarts it with backoff. Each kind's front end
(`kinds/*.py` names it) is what the routes hold in the API process: tokenizer, template and
limits run there, the model itself in the worker.
"""
