"""Alembic's env.py for pizza: migrate the connection the caller hands over (see
pizza.eventing.migrations.run_env); there is no ini file and no offline mode."""

from alembic import context

from pizza.eventing.migrations import run_env

run_env(context)
