"""PostgreSQL as the store for several machines (issue 18.1): so far its schema.

One store, two dialects: the store modules (core/store/*.py) keep their SQL, written in what SQLite and
PostgreSQL share, and a PostgreSQL connection will run it; what differs (full text, ``lastrowid``,
``BEGIN IMMEDIATE``, ``json_extract``) gets code of each dialect's own in a later step. Here:
:mod:`core.store.postgres.migrations`, the schema as migrations in step with SQLite's, and
:mod:`core.store.postgres.migrate`, the runner that applies them.
"""

from core.store.postgres.migrations import MIGRATIONS, apply

__all__ = ["MIGRATIONS", "apply"]
