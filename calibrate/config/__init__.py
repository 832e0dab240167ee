"""The YAML files users write and read: tiers.yaml and routing.yaml."""
