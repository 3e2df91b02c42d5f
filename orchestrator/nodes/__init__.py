"""The render nodes as the orchestrator sees them: the HTTP client and the frames.tar reader."""
