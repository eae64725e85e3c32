"""ferry's event connectors: a broker-neutral core plus one package per event source."""
