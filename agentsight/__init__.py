"""agentsight: observe AI agents from outside with eBPF."""

__version__ = "0.1.0"
