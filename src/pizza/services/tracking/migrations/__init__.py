"""The tracking service's schema history: Alembic revisions (README, Migrations)."""
