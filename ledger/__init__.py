"""The call ledger: one KV entry per async call saying what became of it (entries and keys,
the store that the front door's call routes and `ferry calls` read, the batching writer).
The worker's side of it (`queue_worker.worker_ledger`) is an adapter in the worker.
It imports only `asyncq`, `connectors.jetstream`, `connectors.core` and `nats`."""
