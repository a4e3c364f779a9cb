"""PostgreSQL as the store for several machines (issue 18.1): so far its schema and its connection.

One store, two dialects: the store modules (core/store/*.py) keep their SQL, written in what SQLite and
PostgreSQL share (``?`` parameters, upserts as ``ON CONFLICT``, new ids by ``RETURNING id``), and reach
their connection only through core/store/sql.py's ``SqlDatabase``. Here:
:mod:`core.store.postgres.migrations`, the schema as migrations in step with SQLite's;
:mod:`core.store.postgres.migrate`, the runner that applies them; and
:mod:`core.store.postgres.connection`, the connection the store's SQL runs on. What still differs (full
text, ``json_extract``, the claims that SQLite serialises with ``BEGIN IMMEDIATE``) gets code of each
dialect's own in a later step.
"""

from core.store.postgres.connection import PgDatabase
from core.store.postgres.migrations import MIGRATIONS, apply

__all__ = ["MIGRATIONS", "PgDatabase", "apply"]
