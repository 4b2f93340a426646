"""Revisions of the orders chain, oldest first (kernel: pizza/eventing/migrations)."""
