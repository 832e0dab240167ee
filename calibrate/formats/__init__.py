"""Log formats: the canonical format's rules and the readers of log files."""
