"""The diff stage: what changed between two routing.yaml files, and whether it matters."""
