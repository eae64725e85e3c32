"""SQS source: receives from queues with aioboto3 and invokes subscribed functions."""
