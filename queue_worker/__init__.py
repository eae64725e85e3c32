"""The JetStream queue worker: runs queued async invocations and sends their callbacks."""
