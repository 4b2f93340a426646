"""The orders service's schema history: Alembic revisions (README, Migrations)."""
