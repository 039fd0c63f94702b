"""Where records go to be kept and asked about: the SQLite store, reports, OTLP export."""
