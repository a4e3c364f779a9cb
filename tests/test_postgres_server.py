"""The tests' PostgreSQL server (tests/postgres_server.py): real, on loopback, a database per test, gone after."""

from __future__ import annotations

import psycopg
import pytest

from tests.postgres_server import PostgresServer


async def test_each_test_gets_an_empty_database_of_its_own_on_a_real_server(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        version = (await (await conn.execute("SHOW server_version_num")).fetchone() or [0])[0]
        assert int(version) >= 150000  # Debian 12's PostgreSQL 15, or newer
        tables = await (await conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).fetchone()
        assert tables == (0,)
        await conn.execute("CREATE TABLE mine (x int)")
        await conn.commit()
    other = postgres_server.database()
    assert other != postgres_url
    async with await psycopg.AsyncConnection.connect(other) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            await conn.execute("SELECT * FROM mine")


async def test_the_server_listens_on_loopback_only(postgres_server: PostgresServer) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_server.admin_url) as conn:
        row = await (await conn.execute("SHOW listen_addresses")).fetchone()
    assert row == ("127.0.0.1",)
