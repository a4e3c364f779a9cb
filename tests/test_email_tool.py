"""The send_email tool against a real SMTP server (aiosmtpd) on 127.0.0.1, invoked as the SDK does."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from core.settings import SmtpSettings
from core.tools.email import make_email_tool
from tests.helpers import invoke_tool as invoke

USERNAME = "bot@example.com"
PASSWORD = "s3cret-Pa55word"
NOT_SENT = "The email was not sent: "


@dataclass
class MailServer:
    """What the local SMTP server saw: connections, login attempts, refused and delivered mail."""

    port: int = 0
    connections: int = 0
    logins: list[tuple[str, str]] = field(default_factory=list)
    delivered: list[Envelope] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    def settings(self, **overrides: Any) -> SmtpSettings:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": USERNAME,
            "password": PASSWORD,
            "sender": "Threadline <bot@example.com>",
            "starttls": False,
        }
        values.update(overrides)
        return SmtpSettings(**values)

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        if (login, password) == (USERNAME, PASSWORD):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.delivered.append(envelope)
        return "250 Message accepted for delivery"


def parse(envelope: Envelope) -> EmailMessage:
    assert envelope.original_content is not None
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture
async def mail_server() -> AsyncIterator[MailServer]:
    """A real SMTP server without TLS that offers AUTH (so STARTTLS is never offered)."""
    state = MailServer()

    def protocol() -> SMTP:
        state.connections += 1
        return SMTP(
            state,
            hostname="smtp.test",
            authenticator=state.authenticate,
            auth_require_tls=False,
        )

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_schema_comes_from_the_signature_and_approval_is_required(mail_server: MailServer) -> None:
    tool = make_email_tool(mail_server.settings())

    assert tool.name == "send_email"
    assert tool.needs_approval is True
    schema = tool.params_json_schema
    assert list(schema["properties"]) == ["to", "subject", "body"]
    assert all(schema["properties"][p]["type"] == "string" for p in ("to", "subject", "body"))
    assert "comma" in schema["properties"]["to"]["description"]
    assert schema["required"] == ["to", "subject", "body"]
    assert schema["additionalProperties"] is False
    assert "domains" not in tool.description


async def test_the_description_names_the_allowed_domains(mail_server: MailServer) -> None:
    tool = make_email_tool(mail_server.settings(allowed_domains=("example.com", "example.org")))
    assert tool.description.endswith("Recipients must be at one of these domains: example.com, example.org.")


async def test_sends_with_login_to_every_recipient(mail_server: MailServer) -> None:
    tool = make_email_tool(mail_server.settings())

    result = await invoke(
        tool,
        to="ana@example.com, Bo <bo@example.org>,ana@example.com",
        subject="Réunion de lundi",
        body="Bonjour,\n\nLa réunion est à 10 h.\n",
    )

    assert result == "Email sent to ana@example.com, bo@example.org (subject: Réunion de lundi)."
    assert mail_server.logins == [(USERNAME, PASSWORD)]
    [envelope] = mail_server.delivered
    assert envelope.mail_from == "bot@example.com"
    assert envelope.rcpt_tos == ["ana@example.com", "bo@example.org"]
    message = parse(envelope)
    assert message["From"] == "Threadline <bot@example.com>"
    assert message["To"] == "ana@example.com, bo@example.org"
    assert message["Subject"] == "Réunion de lundi"
    assert message["Date"]
    assert message["Message-ID"].startswith("<")
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == "Bonjour,\n\nLa réunion est à 10 h.\n"


async def test_sends_without_login_when_no_credentials_are_configured(mail_server: MailServer) -> None:
    tool = make_email_tool(mail_server.settings(username=None, password=None, sender="bot@example.com"))

    result = await invoke(tool, to="ana@example.com", subject="Hi", body="Hello")

    assert result.startswith("Email sent to ana@example.com")
    assert mail_server.logins == []
    assert [e.rcpt_tos for e in mail_server.delivered] == [["ana@example.com"]]


@pytest.mark.parametrize("sender", [None, "", "Threadline"])
async def test_a_missing_sender_address_is_refused_before_connecting(
    mail_server: MailServer, sender: str | None
) -> None:
    tool = make_email_tool(mail_server.settings(sender=sender))
    result = await invoke(tool, to="ana@example.com", subject="Hi", body="Hello")
    assert result == NOT_SENT + "no sender address is configured; ask an administrator."
    assert mail_server.connections == 0


async def test_a_sender_setting_that_cannot_be_a_header_is_refused_before_connecting(
    mail_server: MailServer,
) -> None:
    tool = make_email_tool(mail_server.settings(sender="bot@example.com\r\nBcc: eve@evil.test"))
    result = await invoke(tool, to="ana@example.com", subject="Hi", body="Hello")
    assert result == NOT_SENT + "the message could not be built; ask an administrator to check SMTP_FROM."
    assert mail_server.connections == 0


async def test_starttls_configured_but_not_offered_sends_nothing(
    mail_server: MailServer, caplog: pytest.LogCaptureFixture
) -> None:
    tool = make_email_tool(mail_server.settings(starttls=True))

    with caplog.at_level(logging.ERROR, logger="core.tools.email"):
        result = await invoke(tool, to="ana@example.com", subject="Hi", body="Hello")

    assert result.startswith(NOT_SENT)
    assert "STARTTLS" in result
    assert "without encryption is not allowed" in result
    assert mail_server.connections == 1
    assert mail_server.logins == []  # the password never went over the clear connection
    assert mail_server.delivered == []
    assert "STARTTLS" in caplog.text


async def test_a_refused_login_is_a_clear_result_without_the_password(
    mail_server: MailServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-Pa55word-42"
    tool = make_email_tool(mail_server.settings(password=wrong))

    with caplog.at_level(logging.DEBUG, logger="core"):
        result = await invoke(tool, to="ana@example.com", subject="Hi", body="Hello")

    assert result == (
        NOT_SENT + "the mail server refused the login. Ask an administrator to check the SMTP username and password."
    )
    assert set(mail_server.logins) == {(USERNAME, wrong)}  # smtplib tries each offered mechanism
    assert mail_server.delivered == []
    ours = [r for r in caplog.records if r.name.startswith("core")]
    assert any("refused the login" in r.getMessage() for r in ours)
    assert not any(wrong in r.getMessage() for r in ours)
    assert wrong not in result


@pytest.mark.parametrize(
    "to",
    [
        "ana@example.com, eve@evil.test",
        "ana@example.com, eve@sub.example.com",  # subdomains are not implicitly allowed
        "eve@example.com.evil.test",
    ],
)
async def test_recipients_outside_the_allowed_domains_are_refused_before_connecting(
    mail_server: MailServer, to: str
) -> None:
    tool = make_email_tool(mail_server.settings(allowed_domains=("example.com", "example.org")))

    result = await invoke(tool, to=to, subject="Hi", body="Hello")

    refused = to.split(",")[-1].strip()
    assert result == (
        NOT_SENT + f"{refused} is not allowed; email may only go to addresses at example.com, example.org."
    )
    assert mail_server.connections == 0
    assert mail_server.delivered == []


async def test_allowed_domains_match_case_insensitively(mail_server: MailServer) -> None:
    tool = make_email_tool(mail_server.settings(allowed_domains=("Example.COM",)))

    result = await invoke(tool, to="Ana@EXAMPLE.com", subject="Hi", body="Hello")

    assert result.startswith("Email sent to Ana@EXAMPLE.com")
    assert [e.rcpt_tos for e in mail_server.delivered] == [["Ana@EXAMPLE.com"]]


@pytest.mark.parametrize(
    ("to", "subject", "complaint"),
    [
        ("ana@example.com", "Hi\r\nBcc: eve@evil.test", "subject must be a single line"),
        ("ana@example.com", "Hi\nBcc: eve@evil.test", "subject must be a single line"),
        ("ana@example.com", "Hi\u2028Bcc: eve@evil.test", "subject must be a single line"),
        ("ana@example.com\r\nBcc: eve@evil.test", "Hi", "recipient list contains a line break"),
        ("ana@example.com\nBcc: eve@evil.test", "Hi", "recipient list contains a line break"),
    ],
)
async def test_header_injection_is_refused_before_connecting(
    mail_server: MailServer, to: str, subject: str, complaint: str
) -> None:
    tool = make_email_tool(mail_server.settings())

    result = await invoke(tool, to=to, subject=subject, body="Hello")

    assert result.startswith(NOT_SENT)
    assert complaint in result
    assert mail_server.connections == 0


@pytest.mark.parametrize("bad", ["not-an-address", "ana@", "ana@example", "ana smith@example.com", "@example.com"])
async def test_malformed_addresses_are_refused_before_connecting(mail_server: MailServer, bad: str) -> None:
    tool = make_email_tool(mail_server.settings())

    result = await invoke(tool, to=f"ana@example.com, {bad}", subject="Hi", body="Hello")

    assert result == NOT_SENT + f"{bad!r} is not a valid email address."
    assert mail_server.connections == 0


async def test_no_recipient_is_refused(mail_server: MailServer) -> None:
    tool = make_email_tool(mail_server.settings())
    result = await invoke(tool, to=" , ", subject="Hi", body="Hello")
    assert result == NOT_SENT + "no recipient address was given."
    assert mail_server.connections == 0


async def test_a_recipient_refused_by_the_server_is_named(mail_server: MailServer) -> None:
    mail_server.refuse.add("ghost@example.com")
    tool = make_email_tool(mail_server.settings())

    result = await invoke(tool, to="ghost@example.com", subject="Hi", body="Hello")

    assert result == NOT_SENT + "the mail server refused the recipient ghost@example.com."
    assert mail_server.delivered == []


async def test_partly_refused_recipients_are_reported(mail_server: MailServer) -> None:
    mail_server.refuse.add("ghost@example.com")
    tool = make_email_tool(mail_server.settings())

    result = await invoke(tool, to="ana@example.com, ghost@example.com", subject="Hi", body="Hello")

    assert result == (
        "Email sent to ana@example.com (subject: Hi). The mail server refused ghost@example.com; they did not get it."
    )
    assert [e.rcpt_tos for e in mail_server.delivered] == [["ana@example.com"]]


async def test_a_closed_port_is_a_clear_result() -> None:
    tool = make_email_tool(SmtpSettings(host="127.0.0.1", port=free_port(), sender="bot@example.com"))

    result = await invoke(tool, to="ana@example.com", subject="Hi", body="Hello")

    assert result == NOT_SENT + "could not connect to the mail server. Try again later."


async def test_a_silent_server_times_out_with_a_clear_result() -> None:
    release = asyncio.Event()
    accepted = asyncio.Event()

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await release.wait()
        writer.close()

    server = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        tool = make_email_tool(
            SmtpSettings(host="127.0.0.1", port=port, sender="bot@example.com", starttls=False), timeout=0.3
        )
        result = await invoke(tool, to="ana@example.com", subject="Hi", body="Hello")
    finally:
        release.set()
        server.close()
        await server.wait_closed()

    assert accepted.is_set()
    assert result == NOT_SENT + "the mail server did not answer in time. Try again later."
