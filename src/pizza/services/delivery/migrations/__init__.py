"""The delivery service's schema history: Alembic revisions (README, Migrations)."""
