"""The queued async call: what a front door, a worker or a shell command needs to put a call
on the queue or read one back (the QueueRequest codec, names on NATS and the streams,
publishing, large bodies in the object store, dead-letter records and their store).
It imports only `connectors.jetstream`, `connectors.core` and `nats`."""
