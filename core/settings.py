"""Settings read once from the environment (and an optional ``.env``) at start.

This is the only module that reads environment variables; everything else gets
a :class:`Settings` through its constructor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError

__all__ = ["Settings", "SmtpSettings", "load_dotenv_file"]

DEFAULT_MODEL = "gpt-5.4-mini"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str | None = None
    starttls: bool = True
    allowed_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    model: str = DEFAULT_MODEL
    db_path: Path = Path("data/threadline.db")
    # THREADLINE_DATABASE_URL: PostgreSQL (postgresql://...) instead of SQLite at db_path, whose folder
    # then holds only what a process caches on disk. Never shown: it may carry a password.
    database_url: str | None = field(default=None, repr=False)
    assistants_file: Path | None = None
    channel: str = "console:local:default"
    open_meteo_url: str = "https://api.open-meteo.com/v1"
    open_meteo_geocoding_url: str = "https://geocoding-api.open-meteo.com/v1"
    smtp: SmtpSettings | None = None
    log_format: str = "text"
    log_content: bool = False  # THREADLINE_LOG_CONTENT: message bodies in DEBUG logs (off: never logged)
    metrics_port: int | None = None  # THREADLINE_METRICS_PORT; None: unset (bots use 9100, the console none)
    metrics_host: str | None = None  # THREADLINE_METRICS_HOST; None: loopback, and public servers hide /metrics
    model_timeout: float = 60.0  # THREADLINE_MODEL_TIMEOUT: silence allowed before the first byte, between chunks
    model_max_retries: int = 3  # THREADLINE_MODEL_MAX_RETRIES: on 429, 5xx and dropped connections, not on silence
    run_timeout: float = 600.0
    approval_timeout: float = 600.0
    # Processes sharing the database: a process not heard from for this long is taken for gone, and
    # its runs are taken over (on the same machine an exited process is seen at once).
    lease_seconds: float = 60.0
    # The most runs one process executes at once (0: no bound); the bound adapts below it (core/run_slots.py).
    concurrent_runs: int = 256
    # A graceful stop (SIGTERM, Ctrl-C, ``close()``): runs in progress get this long to finish; the rest
    # are left for another process, or the next start, to answer (0: leave them at once).
    shutdown_grace_seconds: float = 10.0
    tool_timeout: float = 60.0
    tracing: bool = False
    tokenizer: str = "tiktoken"
    embedding_model: str | None = None
    # THREADLINE_EMBEDDING_BASE_URL / _API_KEY: embeddings from another endpoint than the chat model's (either set);
    # the key defaults to OPENAI_API_KEY, the URL to the chat model's.
    embedding_base_url: str | None = None
    embedding_api_key: str | None = field(default=None, repr=False)
    max_file_mb: float = 50.0
    max_image_mb: float = 10.0  # THREADLINE_MAX_IMAGE_MB: the largest image shown to the model (core/images.py)
    chunk_tokens: int = 800
    chunk_overlap: int = 400
    extraction_workers: int = 1
    # THREADLINE_VECTOR_CACHE_MB: memory for vectors kept between searches (core/knowledge/vector_cache.py)
    vector_cache_mb: float = 512.0
    code_interpreter: bool = True  # offered when a sandbox works on this machine
    sandbox_python: Path = Path(".sandbox/bin/python")
    sandbox_idle_minutes: float = 60.0
    sandbox_call_seconds: float = 60.0
    sandbox_memory_mb: int = 2048
    sandbox_max_sessions: int = 8
    sandbox_first_uid: int = 61000
    sandbox_cgroup: Path | None = None  # None: session cgroups inside the bot's own memory cgroup
    retention_days: float | None = None  # None: keep conversation data forever
    retention_keep_last: int = 20  # messages of a channel's current thread retention never deletes
    # The environment as read at start, for the assistants file's ${VAR} references (MCP servers' secrets:
    # core/mcp_config.py). Never shown: it holds secrets.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def model_configured(self) -> bool:
        """True when an endpoint is set: a key for OpenAI, or a base URL for a local server."""
        return bool(self.openai_api_key or self.openai_base_url)

    @property
    def embeddings_endpoint(self) -> bool:
        """True when embeddings have an endpoint of their own (THREADLINE_EMBEDDING_BASE_URL or _API_KEY)."""
        return bool(self.embedding_base_url or self.embedding_api_key)

    @property
    def embeddings_configured(self) -> bool:
        """True when there is an endpoint to ask for embeddings: their own, or the chat model's."""
        return self.embeddings_endpoint or self.model_configured

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: float, *, zero: bool = False) -> float:
            """A number of seconds (or megabytes...) above zero; ``zero``: 0 is allowed too."""
            raw = text(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number.") from None
            if value < 0 or (value == 0 and not zero):
                raise ConfigError(f"{name}={raw!r} must be {'0 or more' if zero else 'greater than zero'}.")
            return value

        def count(name: str, default: int) -> int:
            raw = text(name)
            if raw is None:
                return default
            if not raw.isdigit():
                raise ConfigError(f"{name}={raw!r} must be a whole number, 0 or more.")
            return int(raw)

        def flag(name: str, default: bool) -> bool:
            raw = text(name)
            if raw is None:
                return default
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ConfigError(f"{name}={raw!r} is not a yes/no value (use true or false).")

        assistants = text("THREADLINE_ASSISTANTS")
        if assistants is not None:
            assistants_file: Path | None = Path(assistants)
        elif Path("assistants.toml").is_file():
            assistants_file = Path("assistants.toml")
        else:
            assistants_file = None

        smtp = None
        if (host := text("SMTP_HOST")) is not None:
            domains = tuple(
                d.strip().lower().lstrip("@")
                for d in (text("THREADLINE_EMAIL_ALLOWED_DOMAINS") or "").split(",")
                if d.strip()
            )
            smtp = SmtpSettings(
                host=host,
                port=count("SMTP_PORT", 587),
                username=text("SMTP_USERNAME"),
                password=text("SMTP_PASSWORD"),
                sender=text("SMTP_FROM") or text("SMTP_USERNAME"),
                starttls=flag("SMTP_STARTTLS", True),
                allowed_domains=domains,
            )

        log_format = (text("THREADLINE_LOG_FORMAT") or "text").lower()
        if log_format not in {"text", "json"}:
            raise ConfigError(f"THREADLINE_LOG_FORMAT={log_format!r} must be 'text' or 'json'.")

        metrics_port = text("THREADLINE_METRICS_PORT")
        if metrics_port is not None and not (metrics_port.isdigit() and int(metrics_port) < 65536):
            raise ConfigError(f"THREADLINE_METRICS_PORT={metrics_port!r} is not a port number (0 picks a free one).")

        tokenizer = (text("THREADLINE_TOKENIZER") or "tiktoken").lower()
        if tokenizer not in {"tiktoken", "estimate"}:
            raise ConfigError(f"THREADLINE_TOKENIZER={tokenizer!r} must be 'tiktoken' or 'estimate'.")

        chunk_tokens = count("THREADLINE_CHUNK_TOKENS", 800)
        chunk_overlap = count("THREADLINE_CHUNK_OVERLAP", 400)
        if chunk_tokens < 50 or chunk_overlap >= chunk_tokens:
            raise ConfigError(
                f"THREADLINE_CHUNK_TOKENS={chunk_tokens} and THREADLINE_CHUNK_OVERLAP={chunk_overlap}: "
                "chunks need at least 50 tokens and an overlap smaller than the chunk."
            )

        code_interpreter = (text("THREADLINE_CODE_INTERPRETER") or "auto").lower()
        if code_interpreter not in {"auto", "off"}:
            raise ConfigError(f"THREADLINE_CODE_INTERPRETER={code_interpreter!r} must be 'auto' or 'off'.")

        return cls(
            openai_api_key=text("OPENAI_API_KEY"),
            openai_base_url=text("OPENAI_BASE_URL"),
            model=text("THREADLINE_MODEL") or DEFAULT_MODEL,
            db_path=Path(text("THREADLINE_DB") or "data/threadline.db"),
            database_url=_database_url(text("THREADLINE_DATABASE_URL")),
            assistants_file=assistants_file,
            channel=text("THREADLINE_CHANNEL") or "console:local:default",
            open_meteo_url=(text("OPEN_METEO_URL") or cls.open_meteo_url).rstrip("/"),
            open_meteo_geocoding_url=(text("OPEN_METEO_GEOCODING_URL") or cls.open_meteo_geocoding_url).rstrip("/"),
            smtp=smtp,
            log_format=log_format,
            log_content=flag("THREADLINE_LOG_CONTENT", False),
            metrics_port=int(metrics_port) if metrics_port is not None else None,
            metrics_host=text("THREADLINE_METRICS_HOST"),
            model_timeout=number("THREADLINE_MODEL_TIMEOUT", 60.0),
            model_max_retries=count("THREADLINE_MODEL_MAX_RETRIES", 3),
            run_timeout=number("THREADLINE_RUN_TIMEOUT", 600.0),
            approval_timeout=number("THREADLINE_APPROVAL_TIMEOUT", 600.0),
            lease_seconds=number("THREADLINE_LEASE_SECONDS", 60.0),
            concurrent_runs=count("THREADLINE_CONCURRENT_RUNS", 256),
            shutdown_grace_seconds=number("THREADLINE_SHUTDOWN_GRACE_SECONDS", 10.0, zero=True),
            tool_timeout=number("THREADLINE_TOOL_TIMEOUT", 60.0),
            tracing=flag("THREADLINE_TRACING", False),
            tokenizer=tokenizer,
            embedding_model=text("THREADLINE_EMBEDDING_MODEL"),
            embedding_base_url=text("THREADLINE_EMBEDDING_BASE_URL"),
            embedding_api_key=text("THREADLINE_EMBEDDING_API_KEY"),
            max_file_mb=number("THREADLINE_MAX_FILE_MB", 50.0),
            max_image_mb=number("THREADLINE_MAX_IMAGE_MB", 10.0),
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
            extraction_workers=max(count("THREADLINE_EXTRACTION_WORKERS", 1), 1),
            vector_cache_mb=number("THREADLINE_VECTOR_CACHE_MB", 512.0, zero=True),
            code_interpreter=code_interpreter != "off",
            sandbox_python=Path(text("THREADLINE_SANDBOX_PYTHON") or ".sandbox/bin/python"),
            sandbox_idle_minutes=number("THREADLINE_SANDBOX_IDLE_MINUTES", 60.0),
            sandbox_call_seconds=number("THREADLINE_SANDBOX_CALL_SECONDS", 60.0),
            sandbox_memory_mb=max(count("THREADLINE_SANDBOX_MEMORY_MB", 2048), 256),
            sandbox_max_sessions=max(count("THREADLINE_SANDBOX_MAX_SESSIONS", 8), 1),
            sandbox_first_uid=max(count("THREADLINE_SANDBOX_FIRST_UID", 61000), 1000),
            sandbox_cgroup=Path(cgroup) if (cgroup := text("THREADLINE_SANDBOX_CGROUP")) else None,
            retention_days=number("THREADLINE_RETENTION_DAYS", 0.0) or None,
            retention_keep_last=count("THREADLINE_RETENTION_KEEP_LAST", 20),
            environ=dict(env),
        )


def load_dotenv_file(path: str | os.PathLike[str] = ".env") -> None:
    """Load ``.env`` into the environment without overriding what is already set."""
    from dotenv import load_dotenv

    load_dotenv(path, override=False)


def _database_url(url: str | None) -> str | None:
    """THREADLINE_DATABASE_URL, checked: a PostgreSQL URL or nothing (the URL is never repeated: it may hold a
    password)."""
    if url is None:
        return None
    from core.store.postgres.url import PostgresUrl  # psycopg: loaded only when PostgreSQL is asked for

    PostgresUrl.parse(url)
    return url
