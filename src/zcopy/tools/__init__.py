"""Tools built on the core and the servers: bench, trace."""
