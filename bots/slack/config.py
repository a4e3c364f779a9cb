"""The Slack adapter's settings, read once from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.errors import ConfigError

__all__ = ["BOT_SCOPES", "SlackSettings"]

DEFAULT_API_URL = "https://slack.com/api/"
# What the app asks a workspace for when it is installed (as bots/slack/manifest.yml lists them).
BOT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "channels:read",
    "chat:write",
    "commands",
    "files:read",
    "files:write",
    "groups:history",
    "groups:read",
    "im:history",
    "im:read",
    "im:write",
    "mpim:history",
    "mpim:read",
    "reactions:write",
    "users:read",
)


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str | None = field(repr=False)  # None: installed into many workspaces (client_id)
    signing_secret: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)  # set: Socket Mode
    api_url: str = DEFAULT_API_URL
    port: int = 3000
    host: str = "0.0.0.0"
    command_prefix: str = ""  # "tl-" makes the commands /tl-reset, /tl-files, /tl-forget
    allow_bots: bool = False  # answer other bots' messages too
    thread_followups: bool = True  # in a Slack thread the bot is part of, answer people without a mention
    client_id: str | None = None  # set: OAuth install into many workspaces, their tokens in the database
    client_secret: str | None = field(default=None, repr=False)
    state_secret: str | None = field(default=None, repr=False)
    redirect_uri: str | None = None  # SLACK_REDIRECT_URI, as Bolt names it: when the app lists several

    @property
    def many_workspaces(self) -> bool:
        return self.client_id is not None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values a log must never show."""
        values = (self.bot_token, self.signing_secret, self.app_token, self.client_secret, self.state_secret)
        return tuple(v for v in values if v)

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    def command(self, name: str) -> str:
        return f"/{self.command_prefix}{name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SlackSettings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        bot_token = text("SLACK_BOT_TOKEN")
        client_id = text("SLACK_CLIENT_ID")
        if client_id is not None:
            _check_install_settings(env, bot_token)
        elif bot_token is None:
            raise ConfigError(
                "SLACK_BOT_TOKEN is not set. Copy the app's Bot User OAuth Token (xoxb-...) from "
                "OAuth & Permissions into .env (see the README's Slack steps), or set SLACK_CLIENT_ID, "
                "SLACK_CLIENT_SECRET and SLACK_STATE_SECRET to install into many workspaces."
            )
        elif not bot_token.startswith("xoxb-"):
            raise ConfigError(
                "SLACK_BOT_TOKEN should be a bot token starting with xoxb-; check which token you copied."
            )
        app_token = text("SLACK_APP_TOKEN")
        if app_token is not None and not app_token.startswith("xapp-"):
            raise ConfigError("SLACK_APP_TOKEN should be an app-level token starting with xapp- (for Socket Mode).")
        signing_secret = text("SLACK_SIGNING_SECRET")
        if app_token is None and signing_secret is None:
            raise ConfigError(
                "SLACK_SIGNING_SECRET is not set. HTTP mode (no SLACK_APP_TOKEN) needs it to verify requests: "
                "copy it from the app's Basic Information page, or set SLACK_APP_TOKEN to use Socket Mode."
            )
        api_url = text("SLACK_API_URL") or DEFAULT_API_URL
        port_text = text("PORT") or "3000"
        if not port_text.isdigit():
            raise ConfigError(f"PORT={port_text!r} is not a port number.")
        followups = (text("SLACK_THREAD_FOLLOWUPS") or "on").lower()
        if followups not in {"on", "mention"}:
            raise ConfigError(
                f"SLACK_THREAD_FOLLOWUPS={followups!r} is not a choice: 'on' answers replies in a thread the bot is "
                "part of without a mention, 'mention' only when they mention it."
            )
        return cls(
            bot_token=bot_token,
            signing_secret=signing_secret,
            app_token=app_token,
            api_url=api_url if api_url.endswith("/") else api_url + "/",
            port=int(port_text),
            host=text("THREADLINE_HTTP_HOST") or "0.0.0.0",
            command_prefix=text("SLACK_COMMAND_PREFIX") or "",
            allow_bots=(text("SLACK_ALLOW_BOTS") or "false").lower() in {"1", "true", "yes", "on"},
            thread_followups=followups == "on",
            client_id=client_id,
            client_secret=text("SLACK_CLIENT_SECRET"),
            state_secret=text("SLACK_STATE_SECRET"),
            redirect_uri=text("SLACK_REDIRECT_URI"),
        )


def _check_install_settings(env: Mapping[str, str], bot_token: str | None) -> None:
    """An app installed into many workspaces (SLACK_CLIENT_ID): its other settings, with a clear error."""
    if bot_token is not None:
        raise ConfigError(
            "Both SLACK_BOT_TOKEN (one workspace) and SLACK_CLIENT_ID (installed into many, tokens kept in the "
            "database) are set: keep one of them."
        )
    for name, where in (
        ("SLACK_CLIENT_SECRET", "the app's Basic Information page, App Credentials"),
        ("SLACK_STATE_SECRET", "any long random value, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"),
        ("SLACK_SIGNING_SECRET", "the app's Basic Information page"),
    ):
        if not env.get(name, "").strip():
            raise ConfigError(f"SLACK_CLIENT_ID is set, so {name} is needed too: {where}.")
    if env.get("SLACK_APP_TOKEN", "").strip():
        raise ConfigError(
            "SLACK_CLIENT_ID (install into many workspaces) needs HTTP mode, where Slack reaches /slack/install "
            "and /slack/oauth_redirect: unset SLACK_APP_TOKEN."
        )
