"""Deciding who renders what: job queues, batch sizing, node registry, the batch runner and the
scheduler that runs one worker per node slot."""
