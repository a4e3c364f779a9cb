"""The Slack adapter's settings, read once from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.errors import ConfigError

__all__ = ["SlackSettings"]

DEFAULT_API_URL = "https://slack.com/api/"


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str = field(repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)  # set: Socket Mode
    api_url: str = DEFAULT_API_URL
    port: int = 3000
    host: str = "0.0.0.0"
    command_prefix: str = ""  # "tl-" makes the commands /tl-reset, /tl-files, /tl-forget
    allow_bots: bool = False  # answer other bots' messages too
    thread_followups: bool = True  # in a Slack thread the bot is part of, answer people without a mention

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
        if bot_token is None:
            raise ConfigError(
                "SLACK_BOT_TOKEN is not set. Copy the app's Bot User OAuth Token (xoxb-...) from "
                "OAuth & Permissions into .env (see the README's Slack steps)."
            )
        if not bot_token.startswith("xoxb-"):
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
        )
