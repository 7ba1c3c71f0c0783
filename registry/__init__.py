"""The node agent: catalog, health checks, persistence, HTTP API, configuration and CLI."""

__version__ = "0.1.0"

CONSUL_VERSION = "1.17.0"
"""The Consul version whose HTTP API Rumor answers as, reported in ``/v1/agent/self``
``Config.Version``, ``/v1/agent/version`` and the ``build`` member tag, so that version checks
written for Consul (Nomad's ``${attr.consul.version} semver >= 1.7.0``) accept a Rumor agent.
Rumor's own version is ``__version__``, reported beside it (``Config.Revision``)."""
