"""Orchestrator: splits jobs into batches, fans them out to render nodes, collects every frame."""

__version__ = "0.1.0"
