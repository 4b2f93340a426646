"""The pickup service's schema history: Alembic revisions (README, Migrations)."""
