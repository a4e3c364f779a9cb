"""PostgreSQL as the store for several machines (issue 18.1): its schema, its connections, moving over.

One store, two dialects: the store modules (core/store/*.py) keep their SQL, written in what SQLite and
PostgreSQL share (``?`` parameters, upserts as ``ON CONFLICT``, new ids by ``RETURNING id``), and reach
their connection only through core/store/sql.py's ``SqlDatabase``. Here:
:mod:`core.store.postgres.migrations`, the schema as migrations in step with SQLite's;
:mod:`core.store.postgres.migrate`, the runner that applies them;
:mod:`core.store.postgres.connection`, the connection the store's SQL runs on;
:mod:`core.store.postgres.pool`, the pool of them a store lends one of to each call; and
:mod:`core.store.postgres.copy`, a SQLite database copied in (``migrate-to-postgres``). What differs has
code of each dialect's own: the few functions spelt otherwise (core/store/dialect.py), full text (FTS5 on SQLite,
a ``tsvector`` column with a GIN index here, and :mod:`core.store.postgres.ranking_index` where
the server has rum: core/store/keywords.py), and the vector reader's connections
(core/store/vectors.py).
"""

from core.store.postgres.connection import PgDatabase
from core.store.postgres.migrations import MIGRATIONS, apply

__all__ = ["MIGRATIONS", "PgDatabase", "apply"]
