"""Settings come from the environment once; .env.example documents every variable with its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from core.errors import ConfigError
from core.logs import RedactSecrets
from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_documents_every_variable_read() -> None:
    configs = [
        ROOT / "core" / "settings.py",
        ROOT / "bots" / "slack" / "config.py",
        ROOT / "bots" / "discord" / "config.py",
    ]
    source = "".join(path.read_text() for path in configs)
    read = set(re.findall(r'"((?:THREADLINE|OPENAI|SMTP|OPEN_METEO|SLACK|DISCORD)_[A-Z_]+|PORT)"', source))
    documented = set(dotenv_values(ROOT / ".env.example"))
    assert read <= documented, f"missing from .env.example: {sorted(read - documented)}"


def test_env_example_values_are_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no assistants.toml here
    values = {k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()}
    assert Settings.from_env(values) == Settings.from_env({})


def test_smtp_is_off_without_a_host_and_parsed_with_one() -> None:
    assert Settings.from_env({}).smtp is None
    smtp = Settings.from_env(
        {
            "SMTP_HOST": "mail.example.com",
            "SMTP_PORT": "2525",
            "SMTP_USERNAME": "bot@example.com",
            "SMTP_STARTTLS": "false",
            "THREADLINE_EMAIL_ALLOWED_DOMAINS": "Example.com, @corp.example",
        }
    ).smtp
    assert smtp is not None
    assert (smtp.port, smtp.sender, smtp.starttls) == (2525, "bot@example.com", False)
    assert smtp.allowed_domains == ("example.com", "corp.example")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("THREADLINE_RUN_TIMEOUT", "soon"),
        ("THREADLINE_RUN_TIMEOUT", "-1"),
        ("SMTP_STARTTLS", "maybe"),
        ("THREADLINE_LOG_FORMAT", "xml"),
        ("THREADLINE_MODEL_MAX_RETRIES", "two"),
        ("THREADLINE_LEASE_SECONDS", "0"),
        ("THREADLINE_SHUTDOWN_GRACE_SECONDS", "-1"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    env = {name: value, "SMTP_HOST": "mail.example.com"}
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


def test_a_graceful_stop_may_hand_over_at_once() -> None:
    assert Settings.from_env({}).shutdown_grace_seconds == 10.0
    assert Settings.from_env({"THREADLINE_SHUTDOWN_GRACE_SECONDS": "0"}).shutdown_grace_seconds == 0.0


def test_secrets_are_redacted_from_logs() -> None:
    import logging

    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "calling with key %s", ("sk-live-abcdef123",), None)
    assert RedactSecrets(["sk-live-abcdef123"]).filter(record)
    assert record.getMessage() == "calling with key [redacted]"


def test_settings_repr_hides_secrets() -> None:
    settings = Settings.from_env(
        {"OPENAI_API_KEY": "sk-live-abcdef123", "SMTP_HOST": "h", "SMTP_PASSWORD": "pw-123456"}
    )
    assert "sk-live-abcdef123" not in repr(settings)
    assert "pw-123456" not in repr(settings)


def test_the_database_url_selects_postgresql_and_a_wrong_one_is_refused_without_its_password() -> None:
    url = "postgresql://bot:s3cret-pw@db.internal:5432/threadline"
    settings = Settings.from_env({"THREADLINE_DATABASE_URL": url})
    assert settings.database_url == url
    assert "s3cret-pw" not in repr(settings)
    assert Settings.from_env({}).database_url is None
    with pytest.raises(ConfigError, match="THREADLINE_DATABASE_URL") as refused:
        Settings.from_env({"THREADLINE_DATABASE_URL": "mysql://bot:s3cret-pw@db/threadline"})
    assert "s3cret-pw" not in str(refused.value)
    # The same check as migrate-to-postgres makes (core/store/postgres/url.py), port included.
    with pytest.raises(ConfigError, match="has a port that is not a number") as refused:
        Settings.from_env({"THREADLINE_DATABASE_URL": "postgresql://bot:s3cret-pw@db:port/threadline"})
    assert "s3cret-pw" not in str(refused.value)
