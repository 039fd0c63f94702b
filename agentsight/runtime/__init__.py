"""How a pipeline runs: the actor process, the supervisor, the bus, link state, endpoints, clients of a collector."""
