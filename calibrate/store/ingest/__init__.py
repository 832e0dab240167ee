"""The ingest writes: the file path, the line path, the fast lane, the format's rules as SQL, the merge rule, runs."""
