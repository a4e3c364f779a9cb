"""The built-in ``send_email`` tool: plain-text mail through the configured SMTP server.

Sending changes the world, so the tool declares ``needs_approval``: the run
pauses until a person approves the exact recipients, subject and body.
Recipients are checked before any connection is made (syntax, header
injection, the allowed domains); SMTP runs in a worker thread so the event
loop never blocks. Every failure is a tool result written for the person,
never an exception, and the password never appears in a result or a log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import ssl
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from agents import FunctionTool, function_tool

from core.settings import SmtpSettings

__all__ = ["make_email_tool"]

_log = logging.getLogger(__name__)

# Deliberately simple: ASCII local part and a dotted host name. Good enough to
# catch what a model gets wrong; the mail server has the last word.
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)

_IMPLICIT_TLS_PORT = 465
_NOT_SENT = "The email was not sent: "


class _Refused(Exception):
    """Sending stopped; the message is the tool result, written for the person."""


class _StartTlsNotOffered(Exception):
    pass


@dataclass(frozen=True)
class _Delivery:
    accepted: tuple[str, ...]
    refused: tuple[str, ...]


def make_email_tool(config: SmtpSettings, *, timeout: float = 30.0) -> FunctionTool:
    """Build the ``send_email`` tool for one SMTP account.

    ``timeout`` bounds each network operation of the SMTP conversation, in seconds.
    With ``config.starttls`` the connection must be upgraded to TLS before
    anything else is sent; a server that does not offer STARTTLS is refused.
    Port 465 means implicit TLS (SMTPS) and is used as such.
    """
    allowed = tuple(domain.strip().lower().lstrip("@") for domain in config.allowed_domains)

    async def send_email(to: str, subject: str, body: str) -> str:
        """Send a plain-text email. Use only when the user asked for an email to be sent.

        The user is shown the recipients, subject and body and must approve before it goes out.

        Args:
            to: Recipient email address, or several separated by commas,
                e.g. "ana@example.com, bo@example.com". Addresses only, no names.
            subject: The subject, one line.
            body: The message text (plain text, not HTML).
        """
        try:
            recipients = _parse_recipients(to, allowed)
            if _has_line_break(subject):
                raise _Refused(_NOT_SENT + "the subject must be a single line without control characters.")
            sender = parseaddr(config.sender or "")[1]
            if "@" not in sender:
                _log.error("email: no usable sender address is configured (SMTP_FROM or SMTP_USERNAME)")
                raise _Refused(_NOT_SENT + "no sender address is configured; ask an administrator.")
            message = _build_message(config.sender or sender, recipients, subject.strip(), body)
            delivery = await asyncio.to_thread(_deliver, config, sender, message, recipients, timeout)
        except _Refused as refusal:
            return str(refusal)

        result = f"Email sent to {', '.join(delivery.accepted)} (subject: {subject.strip()})."
        if delivery.refused:
            result += f" The mail server refused {', '.join(delivery.refused)}; they did not get it."
        return result

    tool = function_tool(send_email, needs_approval=True)
    if allowed:
        # Tell the model up front, so it does not propose mail that would be refused.
        tool.description += f" Recipients must be at one of these domains: {', '.join(allowed)}."
    return tool


def _build_message(sender: str, recipients: list[str], subject: str, body: str) -> EmailMessage:
    try:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2])
        message.set_content(body)
    except (ValueError, TypeError) as exc:  # e.g. a sender setting the email package cannot encode
        _log.error("email: the message could not be built: %r", exc)
        raise _Refused(_NOT_SENT + "the message could not be built; ask an administrator to check SMTP_FROM.") from None
    return message


def _has_line_break(value: str) -> bool:
    """True for CR, LF or any other control or line-separator character (a header-injection attempt)."""
    return any(char != "\t" and unicodedata.category(char) in {"Cc", "Zl", "Zp"} for char in value)


def _parse_recipients(to: str, allowed: tuple[str, ...]) -> list[str]:
    if _has_line_break(to):
        raise _Refused(_NOT_SENT + "the recipient list contains a line break or control character.")
    recipients: list[str] = []
    seen: set[str] = set()
    for item in to.split(","):
        item = item.strip()
        if not item:
            continue
        _, address = parseaddr(item)
        if not address or not _ADDRESS.fullmatch(address):
            raise _Refused(_NOT_SENT + f"{item!r} is not a valid email address.")
        domain = address.rpartition("@")[2].lower()
        if allowed and domain not in allowed:
            raise _Refused(
                _NOT_SENT + f"{address} is not allowed; email may only go to addresses at " + ", ".join(allowed) + "."
            )
        if address.lower() not in seen:
            seen.add(address.lower())
            recipients.append(address)
    if not recipients:
        raise _Refused(_NOT_SENT + "no recipient address was given.")
    return recipients


def _deliver(
    config: SmtpSettings, sender: str, message: EmailMessage, recipients: list[str], timeout: float
) -> _Delivery:
    """Blocking: run the SMTP conversation. Raises :class:`_Refused` with the person's message."""
    where = f"{config.host}:{config.port}"
    try:
        smtp: smtplib.SMTP
        if config.port == _IMPLICIT_TLS_PORT:
            smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if config.starttls and config.port != _IMPLICIT_TLS_PORT:
                if not smtp.has_extn("starttls"):
                    raise _StartTlsNotOffered
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if config.username and config.password:
                smtp.login(config.username, config.password)
            refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    except _StartTlsNotOffered:
        _log.error("email: %s does not offer STARTTLS and SMTP_STARTTLS is on; not sending", where)
        raise _Refused(
            _NOT_SENT + "the mail server does not offer an encrypted connection (STARTTLS), "
            "and sending without encryption is not allowed. Ask an administrator to check "
            "the SMTP settings."
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        _log.error("email: %s refused the login for %r: %s", where, config.username, _reply(exc, config))
        raise _Refused(
            _NOT_SENT + "the mail server refused the login. Ask an administrator to check "
            "the SMTP username and password."
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        _log.warning("email: %s refused every recipient: %s", where, _redact(str(exc.recipients), config))
        raise _Refused(_NOT_SENT + f"the mail server refused the recipient {', '.join(exc.recipients)}.") from None
    except smtplib.SMTPSenderRefused as exc:
        _log.error("email: %s refused the sender %r: %s", where, sender, _reply(exc, config))
        raise _Refused(_NOT_SENT + f"the mail server refused the sender address {sender}.") from None
    except smtplib.SMTPDataError as exc:
        _log.warning("email: %s rejected the message: %s", where, _reply(exc, config))
        raise _Refused(_NOT_SENT + "the mail server rejected the message.") from None
    except smtplib.SMTPNotSupportedError as exc:
        _log.error("email: %s does not support a command we need: %s", where, _redact(str(exc), config))
        raise _Refused(_NOT_SENT + "the mail server does not support login or a command needed to send.") from None
    except smtplib.SMTPServerDisconnected as exc:
        if isinstance(exc.__context__, TimeoutError):  # smtplib wraps a read timeout in this
            _log.warning("email: %s did not answer within %.1f s", where, timeout)
            raise _Refused(_NOT_SENT + "the mail server did not answer in time. Try again later.") from None
        _log.warning("email: %s closed the connection: %s", where, _redact(str(exc), config))
        raise _Refused(_NOT_SENT + "the mail server closed the connection. Try again later.") from None
    except smtplib.SMTPException as exc:
        _log.warning("email: SMTP error from %s: %s", where, _redact(repr(exc), config))
        raise _Refused(_NOT_SENT + "the mail server reported an error. Try again later.") from None
    except ssl.SSLError as exc:
        _log.error("email: TLS with %s failed: %s", where, exc)
        raise _Refused(
            _NOT_SENT + "the secure connection to the mail server failed. "
            "Ask an administrator to check the SMTP settings."
        ) from None
    except TimeoutError:
        _log.warning("email: %s did not answer within %.1f s", where, timeout)
        raise _Refused(_NOT_SENT + "the mail server did not answer in time. Try again later.") from None
    except OSError as exc:
        _log.warning("email: could not connect to %s: %s", where, exc)
        raise _Refused(_NOT_SENT + "could not connect to the mail server. Try again later.") from None

    refused_addresses = tuple(refused)
    accepted = tuple(address for address in recipients if address not in refused)
    if refused_addresses:
        _log.warning("email: %s refused some recipients: %s", where, refused)
    return _Delivery(accepted=accepted, refused=refused_addresses)


def _reply(exc: smtplib.SMTPResponseException, config: SmtpSettings) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return _redact(f"{exc.smtp_code} {text}", config)


def _redact(text: str, config: SmtpSettings) -> str:
    """Never let the password through, even if a server echoes it back."""
    if config.password:
        text = text.replace(config.password, "***")
    return text
