"""Revisions of the loyalty chain, oldest first (kernel: pizza/eventing/migrations)."""
