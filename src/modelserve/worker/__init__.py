"""Every loaded model runs in a worker process of its own (`child`), driven from the API
process through a `WorkerHandle` (`handle`) over one pipe carrying `protocol` messages,
written by `pipe` so the event loop never waits on a worker; `local` is the same interface
for a model run inline. Fronts and the registry see only `transport.Worker`.

A native fault, an OOM kill, a `kill -9`, a missed heartbeat or a thread that dies ends only
that worker: its in-flight requests fail with a 503 and the lifecycle restarts it with
backoff. Each kind's front (fronts/, named by its declaration in kinds/) is what the routes
hold in the API process: tokenizer, template and limits run there, the model in the worker.
"""
