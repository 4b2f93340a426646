"""The notifications service's schema history: Alembic revisions (README, Migrations)."""
