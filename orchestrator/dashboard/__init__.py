"""The web dashboard: HTML shells, their static JS/CSS and the frame map the grid polls."""
