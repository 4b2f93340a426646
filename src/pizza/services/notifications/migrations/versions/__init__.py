"""Revisions of the notifications chain, oldest first (kernel: pizza/eventing/migrations)."""
