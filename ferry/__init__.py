"""ferry: async queue worker and event connectors for OpenFaaS-compatible gateways."""

from connectors.core.version import VERSION

__all__ = ["VERSION"]
