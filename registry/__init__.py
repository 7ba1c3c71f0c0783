"""The node agent: catalog, health checks, persistence, HTTP API, configuration and CLI."""

__version__ = "0.1.0"
