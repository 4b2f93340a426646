"""Revisions of the tracking chain, oldest first (kernel: pizza/eventing/migrations)."""
