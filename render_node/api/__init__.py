"""The render node's HTTP API: `create_app(settings)` and its routers (jobs, scenes, system)."""

from render_node.api.app import create_app

__all__ = ["create_app"]
