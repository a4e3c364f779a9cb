"""Shared fixtures: a scripted model server on loopback and a Threadline service pointed at it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import openai
import pytest

from bots.api.app import ApiServer
from bots.api.config import ApiSettings
from core.service import Threadline
from core.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import API_KEY_A, API_KEY_B, StoreDatabase
from tests.postgres_server import PostgresServer
from tests.tool_modules import team_tools

TEAM_ASSISTANTS = """
default = "team"
tool_modules = ["tests.tool_modules.team_tools"]

[[assistants]]
name = "team"
instructions = "You help the team."
model = "fake-model"
tools = ["lookup_ticket", "slow_step", "broken_tool", "stuck_tool", "deploy"]
context_tokens = 4000
"""


@pytest.fixture
async def fake_model() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def team_assistants(tmp_path: Path) -> Path:
    path = tmp_path / "assistants.toml"
    path.write_text(TEAM_ASSISTANTS)
    return path


@pytest.fixture(autouse=True)
def _clear_timeline() -> None:
    team_tools.TIMELINE.clear()


@pytest.fixture
def settings(tmp_path: Path, fake_model: FakeOpenAI, team_assistants: Path, database: StoreDatabase) -> Settings:
    return Settings(
        database_url=database.url,
        openai_api_key="sk-test-not-a-real-key",
        openai_base_url=fake_model.base_url,
        model="fake-model",
        db_path=database.path,
        assistants_file=team_assistants,
        open_meteo_url="http://127.0.0.1:9/v1",
        open_meteo_geocoding_url="http://127.0.0.1:9/v1",
        model_timeout=5.0,
        model_max_retries=2,
        tokenizer="estimate",
        code_interpreter=False,  # tests/test_code_interpreter.py turns the sandbox on where it is the subject
        # Sessions of this run get uids no other run on the host uses (the default 61000 is every bot's).
        sandbox_first_uid=200_000_000 + os.getpid() * 8,
        metrics_port=0,  # bots that serve /metrics on a port of their own take a free one, never 9100
    )


ServiceFactory = Callable[..., Awaitable[Threadline]]


@pytest.fixture
async def open_service(settings: Settings) -> AsyncIterator[ServiceFactory]:
    """Open services (several, to simulate restarts); all are closed at the end."""
    opened: list[Threadline] = []

    async def factory(notify: Any = None, platforms: Any = None, **overrides: Any) -> Threadline:
        service = await Threadline.open(replace(settings, **overrides), notify=notify, platforms=platforms)
        opened.append(service)
        return service

    yield factory
    for service in opened:
        if not service._closing:
            await service.close()


@pytest.fixture
async def service(open_service: ServiceFactory) -> Threadline:
    return await open_service()


@pytest.fixture
def smtp_settings() -> Any:
    from core.settings import SmtpSettings

    return SmtpSettings(host="127.0.0.1", port=9, sender="bot@example.com", starttls=False)


# -- the Assistants-compatible API ----------------------------------------------------------------


@pytest.fixture
async def api_server(service: Threadline) -> AsyncIterator[ApiServer]:
    """The API on a free loopback port with two keys (A and B), in front of ``service``."""
    server = await ApiServer.start(service, ApiSettings(keys=(API_KEY_A, API_KEY_B), port=0, host="127.0.0.1"))
    yield server
    await server.stop()


@pytest.fixture
async def client_a(api_server: ApiServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real openai SDK with key A (no retries: a failure shows at once)."""
    async with openai.AsyncOpenAI(base_url=api_server.base_url, api_key=API_KEY_A, max_retries=0) as client:
        yield client


@pytest.fixture
async def client_b(api_server: ApiServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real openai SDK with key B."""
    async with openai.AsyncOpenAI(base_url=api_server.base_url, api_key=API_KEY_B, max_retries=0) as client:
        yield client


# -- the two backends ---------------------------------------------------------------------------------

# The store, knowledge-base, run and multi-process tests run against both backends: each of their tests is
# collected twice, as test[sqlite] and test[postgresql]. A test there that reads SQLite itself (its file,
# its pragmas) is marked ``sqlite_only`` and collected once; one of what PostgreSQL does and SQLite cannot
# (writers at once) is marked ``postgresql_only``. Every other module runs on SQLite.
BOTH_BACKENDS = frozenset(
    {
        "test_adopted_runs",
        "test_api_file_search",
        "test_approvals",
        "test_budgets",
        "test_context",
        "test_conversations",
        "test_knowledge",
        "test_knowledge_vectors",
        "test_multilingual",
        "test_multiprocess",
        "test_processes",
        "test_retention",
        "test_runs",
        "test_store",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: reads SQLite itself; collected for the SQLite backend only")
    config.addinivalue_line(
        "markers", "postgresql_only: what SQLite cannot do; collected for the PostgreSQL backend only"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    both = metafunc.module.__name__.rsplit(".", 1)[-1] in BOTH_BACKENDS
    if both and metafunc.definition.get_closest_marker("postgresql_only") is not None:
        metafunc.parametrize("backend", ["postgresql"], indirect=True)
    elif both and metafunc.definition.get_closest_marker("sqlite_only") is None:
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store's engine for this test: "sqlite", or "postgresql" where the module runs on both."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StoreDatabase]:
    if backend == "sqlite":
        yield StoreDatabase(tmp_path / "threadline.db", None)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.database()
    yield StoreDatabase(tmp_path / "threadline.db", url)
    server.drop(url)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session (tests/postgres_server.py), started on first use."""
    with PostgresServer.running() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh database of this test's own on the session's PostgreSQL server."""
    return postgres_server.database()
