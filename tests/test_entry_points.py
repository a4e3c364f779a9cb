"""The ``python -m bots.*`` entry points as an operator meets them: ``--help``, and a platform out of reach."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without the developer's own settings, and a database in ``tmp_path``."""
    prefixes = ("OPENAI_", "SMTP_", "THREADLINE_", "SLACK_", "DISCORD_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env |= {
        "THREADLINE_DB": str(tmp_path / "data" / "entry.db"),
        "THREADLINE_TOKENIZER": "estimate",
        "THREADLINE_CODE_INTERPRETER": "off",
        "THREADLINE_METRICS_PORT": "0",
        "PORT": "0",
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    return env


async def run(module: str, *args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``python -m module args``, its input empty; returns its exit code, output and errors (killed if stuck)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: bound here without listening, so no one else can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("module", "flag", "own_variable"),
    [
        ("bots.console", "--help", "THREADLINE_CHANNEL"),
        ("bots.console", "-h", "THREADLINE_CHANNEL"),
        ("bots.slack", "--help", "SLACK_BOT_TOKEN"),
        ("bots.discord", "--help", "DISCORD_TOKEN"),
        ("bots.api", "--help", "THREADLINE_API_KEYS"),
    ],
)
async def test_help_prints_usage_and_starts_nothing(
    tmp_path: Path, closed_port: int, module: str, flag: str, own_variable: str
) -> None:
    # Everything each entry point needs to start, so that without --help it would (and make the database);
    # the platforms at a closed port, so that even then nothing leaves this machine.
    env = clean_env(
        tmp_path,
        OPENAI_BASE_URL=f"http://127.0.0.1:{closed_port}/v1",
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="secret",
        SLACK_API_URL=f"http://127.0.0.1:{closed_port}/api/",
        DISCORD_TOKEN="test-token",
        DISCORD_API_URL=f"http://127.0.0.1:{closed_port}/api/v10",
        DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{closed_port}/gateway",
    )
    code, out, err = await run(module, flag, env=env, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith(f"usage: python -m {module}")
    assert "Settings come from the environment and from a .env file" in out
    for variable in (own_variable, "OPENAI_API_KEY", "OPENAI_BASE_URL", "THREADLINE_DB"):
        assert variable in out
    assert err == ""
    assert not (tmp_path / "data").exists()  # no database, nothing started


async def test_an_unknown_argument_is_a_usage_error(tmp_path: Path) -> None:
    code, _out, err = await run("bots.api", "--port", "80", env=clean_env(tmp_path), cwd=tmp_path)
    assert code == 2
    assert "unrecognized arguments: --port 80" in err
    assert not (tmp_path / "data").exists()


def assert_one_clear_line(err: str, says: str) -> str:
    """The one error line of a start that failed (returned), which says ``says``; no traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1, err
    assert says in errors[0]
    assert len(err.splitlines()) <= 10, err  # a few start-up lines at most, not a traceback
    return errors[0]


async def test_slack_out_of_reach_stops_with_one_line_naming_the_host(tmp_path: Path, closed_port: int) -> None:
    env = clean_env(
        tmp_path,
        OPENAI_API_KEY="sk-test-not-a-real-key",
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="secret",
        SLACK_API_URL=f"http://127.0.0.1:{closed_port}/api/",
    )
    code, _out, err = await run("bots.slack", env=env, cwd=tmp_path)
    assert code == 2
    assert_one_clear_line(err, f"Could not reach Slack at 127.0.0.1:{closed_port} (connection refused)")
    assert "SLACK_API_URL" in err


async def test_discord_out_of_reach_stops_with_one_line_naming_the_host(tmp_path: Path, closed_port: int) -> None:
    env = clean_env(
        tmp_path,
        OPENAI_API_KEY="sk-test-not-a-real-key",
        DISCORD_TOKEN="test-token",
        DISCORD_API_URL=f"http://127.0.0.1:{closed_port}/api/v10",
        DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{closed_port}/gateway",
    )
    code, _out, err = await run("bots.discord", env=env, cwd=tmp_path)
    assert code == 2
    assert_one_clear_line(err, f"Could not reach Discord at 127.0.0.1:{closed_port} (connection refused)")
    assert "test-token" not in err


async def test_postgresql_out_of_reach_stops_with_one_line_and_no_password(tmp_path: Path, closed_port: int) -> None:
    env = clean_env(
        tmp_path,
        OPENAI_API_KEY="sk-test-not-a-real-key",
        DISCORD_TOKEN="test-token",
        DISCORD_API_URL=f"http://127.0.0.1:{closed_port}/api/v10",
        THREADLINE_DATABASE_URL=f"postgresql://bot:pw-not-shown@127.0.0.1:{closed_port}/threadline",
    )
    code, _out, err = await run("bots", env=env, cwd=tmp_path)
    assert code == 2
    says = f"Could not connect to PostgreSQL (threadline on 127.0.0.1:{closed_port}): Connection refused"
    assert "THREADLINE_DATABASE_URL" in assert_one_clear_line(err, says)
    assert "pw-not-shown" not in err
