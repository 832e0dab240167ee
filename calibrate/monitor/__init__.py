"""The monitor stage: the deployed routing.yaml watched over time."""
