"""What both services share: the wire protocol, frame specs, ids and paths, auth, errors,
limits and logging. Neither service imports the other; both import this."""
