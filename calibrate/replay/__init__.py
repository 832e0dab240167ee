"""The replay stage: shadow calls of every tier for a sample of requests."""
