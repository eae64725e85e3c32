"""Kafka source: consumes topics with aiokafka and invokes subscribed functions."""
