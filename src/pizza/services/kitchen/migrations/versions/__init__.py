"""Revisions of the kitchen chain, oldest first (kernel: pizza/eventing/migrations)."""
