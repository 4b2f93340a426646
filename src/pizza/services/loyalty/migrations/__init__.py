"""The loyalty service's schema history: Alembic revisions (README, Migrations)."""
