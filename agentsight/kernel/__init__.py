"""The kernel side: loading eBPF programs, finding the TLS functions to probe, /proc."""
