"""Warehouse use cases; each names the DESIGN.md §4 invariant it protects."""
