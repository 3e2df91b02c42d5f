"""`python -m render_node`: the same as the `render-node` command."""

from render_node.cli import main

main()
