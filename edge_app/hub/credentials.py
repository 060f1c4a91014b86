"""The broker password and the TLS context, from ``[mqtt]`` configuration (never from code).

Errors name the configuration key and the file or variable, never the password.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path

from edge_app.config import ConfigError, MqttConfig

log = logging.getLogger(__name__)


def read_password(cfg: MqttConfig) -> str | None:
    """The broker password from mqtt.password_file or the variable named by mqtt.password_env.

    Errors name the key and the file or variable, never the password.
    """
    if cfg.password_file and cfg.password_env:
        raise ConfigError("mqtt.password_file and mqtt.password_env: set one of them, not both")
    password = None
    if cfg.password_file:
        path = Path(cfg.password_file).expanduser()
        try:
            mode = path.stat().st_mode
            if not stat.S_ISREG(mode):  # a FIFO would block start-up forever
                raise ConfigError(f"mqtt.password_file: {path}: not a regular file")
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise ConfigError(f"mqtt.password_file: {path}: file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"mqtt.password_file: {path}: cannot read it ({type(exc).__name__})") from None
        if not password:
            raise ConfigError(f"mqtt.password_file: {path}: the file is empty")
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("mqtt.password_file: %s is readable by other users (mode %o): chmod 600 it",
                        path, stat.S_IMODE(mode))
    elif cfg.password_env:
        password = os.environ.get(cfg.password_env)
        if password is None:
            raise ConfigError(f"mqtt.password_env: environment variable {cfg.password_env} is not set")
    if password is not None and not cfg.username:
        raise ConfigError("mqtt.username: a password is configured but no user name")
    return password


def tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """Verify the broker against mqtt.ca_file (or the system CAs); optional client certificate."""
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(cfg, key)
        if value and not Path(value).expanduser().is_file():
            raise ConfigError(f"mqtt.{key}: {value}: file not found")
    if cfg.key_file and not cfg.cert_file:
        raise ConfigError("mqtt.key_file: set mqtt.cert_file too (the client certificate)")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=str(Path(cfg.ca_file).expanduser()) if cfg.ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"mqtt.ca_file: {cfg.ca_file}: not a usable CA certificate ({exc})") from None
    if cfg.cert_file:
        def no_passphrase() -> bytes:
            # an encrypted key would otherwise make OpenSSL prompt on a terminal a service lacks
            return b""
        try:
            ctx.load_cert_chain(str(Path(cfg.cert_file).expanduser()),
                                str(Path(cfg.key_file).expanduser()) if cfg.key_file else None,
                                password=no_passphrase)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"mqtt.cert_file / mqtt.key_file: {cfg.cert_file}: not a usable certificate and "
                              f"unencrypted key ({exc})") from None
    return ctx
