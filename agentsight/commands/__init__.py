"""The `agentsight` command line: one module per command group."""
