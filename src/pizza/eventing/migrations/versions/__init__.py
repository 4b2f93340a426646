"""Revisions of the kernel chain (outbox, inbox), applied in every service's database."""
