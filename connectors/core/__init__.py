"""Broker-neutral pieces every ferry process shares: config, invoker, retries, callbacks."""
