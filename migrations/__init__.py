"""Alembic migrations for lawscreen's schema (see lawscreen/migrate.py; `lawscreen db --help`)."""
