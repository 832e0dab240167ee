"""Frozen dataclasses that cross layers."""
