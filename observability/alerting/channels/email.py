"""E-mail over SMTP (smtplib): STARTTLS on a submission port (587), implicit TLS (465), or plain
for a local relay. `ALERT_EMAIL_SECURITY` = starttls | tls | none (settings refuse anything else);
with `none`, a login is refused unless `ALERT_EMAIL_ALLOW_PLAIN_AUTH` is on, so a password never
crosses the network in clear by mistake (the settings refuse that combination at start already; the
check here stays as a second guard). `ALERT_EMAIL_CA_FILE` adds a CA to trust (a private relay's
certificate). The Message-ID is stable across retries, so a mail
re-sent after a crash can be recognised as the same one."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from observability.alerting.channels.base import DeliveryError, Outgoing, body_lines, title
from observability.settings import Settings

NAME = "email"


def recipients(settings: Settings) -> list[str]:
    return [a.strip() for a in (settings.alert_email_to or "").replace(";", ",").split(",") if a.strip()]


def missing(settings: Settings) -> list[str]:
    need = []
    if not settings.alert_email_enabled:
        need.append("ALERT_EMAIL_ENABLED=true")
    if not settings.alert_email_smtp_host:
        need.append("ALERT_EMAIL_SMTP_HOST")
    if not settings.alert_email_from:
        need.append("ALERT_EMAIL_FROM")
    if not recipients(settings):
        need.append("ALERT_EMAIL_TO")
    return need


def render(msg: Outgoing, settings: Settings) -> EmailMessage:
    m = EmailMessage()
    m["Subject"] = title(msg)
    m["From"] = settings.alert_email_from
    m["To"] = ", ".join(recipients(settings))
    m["Date"] = formatdate(usegmt=True)
    domain = (settings.alert_email_from or "localhost").rpartition("@")[2] or "localhost"
    m["Message-ID"] = f"<{msg.key.replace('@', '-')}@{domain}>"  # stable across retries
    m["X-Alert-Severity"] = msg.severity
    m["X-Alert-Kind"] = msg.kind
    width = max(len(k) for k, _ in body_lines(msg, settings))
    text = "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in body_lines(msg, settings))
    m.set_content(text + "\n")
    return m


def _context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if settings.alert_email_ca_file:
        ctx.load_verify_locations(cafile=str(settings.alert_email_ca_file))
    return ctx


def send(msg: Outgoing, settings: Settings) -> str:
    if missing(settings):
        raise DeliveryError(f"email is not configured: set {', '.join(missing(settings))}", retryable=False)
    message = render(msg, settings)
    host, port = settings.alert_email_smtp_host, settings.alert_email_smtp_port
    security = settings.alert_email_security
    if security == "none" and settings.alert_email_smtp_user and not settings.alert_email_allow_plain_auth:
        raise DeliveryError(
            "SMTP AUTH refused without TLS: set ALERT_EMAIL_SECURITY to starttls or tls "
            "(or ALERT_EMAIL_ALLOW_PLAIN_AUTH=true for a trusted local relay)",
            retryable=False,
        )
    timeout = settings.alert_http_timeout_s
    try:
        if security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=_context(settings))
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if security == "starttls":
                smtp.starttls(context=_context(settings))
                smtp.ehlo()
            if settings.alert_email_smtp_user:
                smtp.login(settings.alert_email_smtp_user, settings.alert_email_smtp_password or "")
            refused = smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(
            f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}", retryable=False
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(f"SMTP server does not support this: {exc}", retryable=False) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [c for c, _ in exc.recipients.values()]
        raise DeliveryError(
            f"SMTP refused every recipient: {exc.recipients}", retryable=any(400 <= c < 500 for c in codes)
        ) from exc
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(
            f"SMTP error {exc.smtp_code}: {exc.smtp_error!r}", retryable=exc.smtp_code < 500
        ) from exc
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(
            f"SMTP TLS certificate not trusted: {exc.verify_message}", retryable=False
        ) from exc
    except (TimeoutError, OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP {host}:{port}: {type(exc).__name__}: {exc}") from exc
    if refused:
        return f"sent; refused for {', '.join(refused)}"
    return f"sent to {len(recipients(settings))} recipient(s)"
