"""The orchestrator's HTTP API: `create_app(settings)`, routers per resource, JSON views."""

from orchestrator.api.app import create_app

__all__ = ["create_app"]
