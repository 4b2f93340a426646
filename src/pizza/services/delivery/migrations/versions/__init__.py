"""Revisions of the delivery chain, oldest first (kernel: pizza/eventing/migrations)."""
