"""The container image, checked where no Docker daemon runs: the Dockerfile's user, volume, tokenizer cache,
health check and entry point, compose's service, and the files the build copies. The health check's own
command is run against a real ``python -m bots``."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from pathlib import Path
from typing import Any

import dockerfile
import yaml
import yarl

from core.settings import Settings
from core.tokens import load_token_counter
from tests.fakes.openai_server import FakeOpenAI
from tests.test_entry_points import clean_env
from tests.test_one_process import Bots, answer, free_port

ROOT = Path(__file__).resolve().parent.parent
STEPS = dockerfile.parse_file(str(ROOT / "Dockerfile"))


def instructions(name: str) -> list[dockerfile.Command]:
    return [step for step in STEPS if step.cmd.upper() == name]


def environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for step in instructions("ENV"):
        pairs = step.value
        env |= dict(zip(pairs[::2], pairs[1::2], strict=True))
    return env


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_image_runs_as_a_user_of_its_own_with_the_database_on_its_volume() -> None:
    *_, user = instructions("USER")
    assert user.value[0] not in ("root", "0")
    assert user.value[0].split(":")[0] in " ".join(step.original for step in instructions("RUN"))  # created there
    [volume] = instructions("VOLUME")
    database = Path(environment()["THREADLINE_DB"])
    assert str(database.parent) in volume.value


def test_the_image_bakes_in_the_encoding_the_bot_counts_tokens_with() -> None:
    encoding = inspect.signature(load_token_counter).parameters["encoding_name"].default
    assert "TIKTOKEN_CACHE_DIR" in environment()  # where tiktoken looks first, and what the build filled
    assert any(f"get_encoding('{encoding}')" in step.original for step in instructions("RUN"))


def test_the_image_starts_python_m_bots_with_the_sandbox_python_it_installs() -> None:
    [entrypoint], [command] = instructions("ENTRYPOINT"), instructions("CMD")
    assert [*entrypoint.value, *command.value] == ["python", "-m", "bots"]
    sandbox = environment()["THREADLINE_SANDBOX_PYTHON"]
    assert any(f"venv {Path(sandbox).parent.parent}" in step.original for step in instructions("RUN"))
    assert any("bubblewrap" in step.original for step in instructions("RUN"))


def test_what_the_build_copies_is_in_the_repository_and_not_left_out_by_dockerignore() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for step in instructions("COPY"):
        *sources, _ = step.value
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.split("/")[0] not in ignored, source


def test_compose_runs_the_image_with_env_and_a_volume_and_waits_past_the_bots_grace() -> None:
    [(name, service)] = compose()["services"].items()
    assert name == "threadline"
    assert service["build"] == "."
    assert service["env_file"] == ".env"
    database = Path(service["environment"]["THREADLINE_DB"])
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}  # target: source
    assert mounts.get(str(database.parent)) in compose()["volumes"]  # a named volume, kept across restarts
    [exposed] = instructions("EXPOSE")
    assert [port.split(":")[1] for port in service["ports"]] == list(exposed.value)
    grace = service["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace[:-1]) > Settings().shutdown_grace_seconds


def test_the_postgresql_compose_starts_the_bot_once_its_database_answers_and_keeps_the_password_in_env() -> None:
    loaded = yaml.safe_load((ROOT / "compose.postgres.yaml").read_text())
    postgres, bot = loaded["services"]["postgres"], loaded["services"]["threadline"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert bot["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    url = yarl.URL(bot["environment"]["THREADLINE_DATABASE_URL"])
    assert (url.scheme, url.host, url.port, url.path) == ("postgresql", "postgres", 5432, "/threadline")
    assert url.user == postgres["environment"]["POSTGRES_USER"]
    assert url.password == "${POSTGRES_PASSWORD}"  # from .env: no password is written here
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for service in (postgres, bot):  # what each keeps is in a named volume
        [volume] = service["volumes"]
        assert volume.split(":")[0] in loaded["volumes"]
    assert bot["command"] == compose()["services"]["threadline"]["command"]
    assert float(bot["stop_grace_period"][:-1]) > Settings().shutdown_grace_seconds


async def healthcheck(port: int) -> int:
    """The Dockerfile's HEALTHCHECK command, run here with PORT set: its exit status."""
    [check] = instructions("HEALTHCHECK")
    kind, program, *arguments = check.value
    assert (kind, program) == ("CMD", "python")
    process = await asyncio.create_subprocess_exec(
        sys.executable, *arguments, env={**os.environ, "PORT": str(port)}, stderr=asyncio.subprocess.DEVNULL
    )
    async with asyncio.timeout(30):
        return await process.wait()


async def test_the_health_check_passes_while_the_bot_serves_and_fails_when_nothing_does(tmp_path: Path) -> None:
    port = free_port()
    assert await healthcheck(port) != 0  # nothing listens yet
    async with FakeOpenAI(answer) as model:
        env = clean_env(tmp_path, OPENAI_BASE_URL=model.base_url, THREADLINE_API="on", PORT=str(port))
        bots = await Bots.start(env, tmp_path)
        try:
            await bots.wait_line(f"health and metrics on http://127.0.0.1:{port}/healthz")
            assert await healthcheck(port) == 0
            assert await bots.stop() == 0
        finally:
            await bots.kill()
