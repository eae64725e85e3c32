"""`ferry gateway`: the durable async front door, an upstream proxy, standalone functions."""
