"""The ingest stage: log files into the store."""
