"""Revisions of the pickup chain, oldest first (kernel: pizza/eventing/migrations)."""
