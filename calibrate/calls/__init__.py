"""Calling OpenAI-compatible endpoints: the dialect, dispatch, limits, prices, call records."""
