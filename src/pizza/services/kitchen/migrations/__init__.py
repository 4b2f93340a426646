"""The kitchen service's schema history: Alembic revisions (README, Migrations)."""
