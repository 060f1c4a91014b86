"""paho's client as the publisher uses it, and the one-line reasons a broker connection fails.

The client subclass remembers why the last connection attempt failed (paho's
``on_connect_fail`` is not told); the reasons name the configuration keys to check.
"""

from __future__ import annotations

import logging
import socket
import ssl

import paho.mqtt.client as mqtt

from edge_app.config import MqttConfig


def paho_logger() -> logging.Logger:
    # paho 2.2 logs "Client is not connected" at ERROR after every failed reconnect: while a broker
    # is down that is one error line per retry, which drowns the single line that matters.
    logger = logging.getLogger("edge_app.hub.paho")
    if not any(isinstance(f, _NotConnectedFilter) for f in logger.filters):
        logger.addFilter(_NotConnectedFilter())
    return logger


class _NotConnectedFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


class Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed (on_connect_fail is not told)."""

    last_connect_error: OSError | None = None

    def reconnect(self):
        try:
            result = super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise
        self.last_connect_error = None
        return result


def refusal(reason_code, cfg: MqttConfig) -> str:
    """Why the broker refused the connection (a failed CONNACK), naming the credentials to check."""
    text = str(reason_code)
    text = text[:1].lower() + text[1:]
    if reason_code.value in (0x86, 0x87, 0x8C):  # bad user name or password / not authorized / bad auth
        # Mosquitto answers a wrong password with "not authorized" (3.1.1 code 5).
        source = (f"mqtt.password_file {cfg.password_file}" if cfg.password_file else
                  f"mqtt.password_env {cfg.password_env}" if cfg.password_env else "no password")
        user = f"mqtt.username {cfg.username!r}" if cfg.username else "no mqtt.username"
        said = "" if reason_code.value == 0x86 else f"; the broker said: {text}"
        text = f"bad user name or password{said} (check {user} and {source})"
    return f"refused the connection: {text}"


def unreachable(exc: BaseException | None, cfg: MqttConfig) -> str:
    """Why no connection was made (``exc``: the client's ``last_connect_error``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"failed TLS verification ({exc.verify_message}; check mqtt.ca_file and that "
                f"{cfg.host} is named in the broker's certificate)")
    if isinstance(exc, ssl.SSLError):
        return f"failed the TLS handshake ({exc.reason or exc}; is mqtt.tls right for port {cfg.port}?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot be resolved ({exc.strerror})"
    if isinstance(exc, OSError):
        return f"cannot be reached ({exc.strerror or exc})"
    return "cannot be reached"
