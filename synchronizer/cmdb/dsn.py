"""CMDB DSNs: parsing MySQL and SQLite DSNs strictly, and redacting any string safely.

Why not `urllib.parse.urlsplit` alone: a password with an unencoded `#`, `/` or `?` is
split in the wrong place by it (`#` starts a fragment, `/` a path), so the password leaks
into the "host" or the "path", is echoed back unredacted, and the port comes out invalid —
a config that looks valid and then fails forever at run time. Here the user part is
everything before the *last* `@`; a character that cannot be told apart from the DSN's own
syntax is refused at load time with one line saying how to encode it, and `redact` hides
whatever is between `://` and that last `@`, whether the rest parses or not.

TLS: `ssl_mode` (`disabled`, `preferred`, `required`, `verify_ca`, `verify_identity`, as
MySQL's client names them) and `ssl_ca` (a CA bundle). MySQL 8's default authentication
(`caching_sha2_password`) needs either TLS or the server's RSA key over plain TCP, which
the drivers fetch with `cryptography` (a dependency for that reason).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

DRIVERS = ("asyncmy", "aiomysql")
DEFAULT_DRIVER = "asyncmy"
SSL_MODES = ("disabled", "preferred", "required", "verify_ca", "verify_identity")
_NUMBERS: dict[str, type] = {"pool_size": int, "connect_timeout": float, "timeout": float}
_ENCODE = {"/": "%2F", "?": "%3F", "#": "%23"}


def redact(dsn: str) -> str:
    """The DSN with anything that may be a password replaced by `***` (never raises)."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return dsn
    userinfo, _, hostpart = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hostpart}"


@dataclass(frozen=True, slots=True)
class MySQLSettings:
    """A parsed MySQL DSN. `repr` and `redacted` never show the password."""

    driver: str
    host: str
    port: int
    user: str
    database: str
    password: str = field(default="", repr=False)
    pool_size: int | None = None
    """Connections in the pool; None: the service's own default (`mysql_conn`)."""
    connect_timeout: float = 10.0
    timeout: float = 60.0
    ssl_mode: str = "disabled"
    ssl_ca: str | None = None

    @property
    def redacted(self) -> str:
        """The DSN with the password replaced, for logs and errors."""
        secret = ":***" if self.password else ""
        return f"mysql+{self.driver}://{self.user}{secret}@{self.host}:{self.port}/{self.database}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context the mode asks for (None: plain TCP)."""
        if self.ssl_mode == "disabled":
            return None
        ctx = ssl.create_default_context(cafile=self.ssl_ca)
        if self.ssl_mode in ("preferred", "required"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ssl_mode == "verify_ca":
            ctx.check_hostname = False
        return ctx


def _split(dsn: str) -> tuple[str, str, str, str]:
    """(scheme, userinfo, host part, query) of `scheme://userinfo@host:port/db?query`."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        raise ValueError("the CMDB DSN has no scheme (mysql://... or sqlite:///...)")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        userinfo, hostpart = "", rest
    for char, code in _ENCODE.items():
        if char in userinfo:
            raise ValueError(f"the user or password of the mysql DSN holds an unencoded"
                             f" {char!r}: write it as {code}")
    hostpart, _, query = hostpart.partition("?")
    return scheme.lower(), userinfo, hostpart, query


def _options(query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in _NUMBERS:
            try:
                options[key] = _NUMBERS[key](value)
            except ValueError:
                raise ValueError(f"mysql DSN parameter {key} must be a number") from None
            if options[key] <= 0:
                raise ValueError(f"mysql DSN parameter {key} must be positive")
        elif key == "ssl_mode":
            if value.lower() not in SSL_MODES:
                raise ValueError(f"mysql DSN parameter ssl_mode must be one of"
                                 f" {', '.join(SSL_MODES)}")
            options[key] = value.lower()
        elif key == "ssl_ca":
            options[key] = value
            options.setdefault("ssl_mode", "verify_identity")
        else:
            known = ", ".join(sorted((*_NUMBERS, "ssl_ca", "ssl_mode")))
            raise ValueError(f"mysql DSN parameter {key!r} is unknown; known: {known}")
    return options


def parse_mysql(dsn: str) -> MySQLSettings:
    """Parse `mysql[+driver]://user:pass@host:port/db?pool_size=&timeout=&ssl_mode=...`.

    Raise a one-line ValueError naming the problem; it never repeats the DSN (a password).
    """
    scheme, userinfo, hostpart, query = _split(dsn.strip())
    base, _, driver = scheme.partition("+")
    if base != "mysql" or (driver and driver not in DRIVERS):
        raise ValueError(f"mysql DSN scheme must be mysql://, mysql+asyncmy:// or "
                         f"mysql+aiomysql://, not {scheme}://")
    address, slash, database = hostpart.partition("/")
    database = unquote(database)
    if not slash or not database or "/" in database:
        raise ValueError("mysql DSN names no database (mysql://user:pass@host:port/DATABASE)")
    host, colon, port_text = address.rpartition(":") if ":" in address else (address, "", "")
    try:
        port = int(port_text) if colon else 3306
    except ValueError:
        raise ValueError("mysql DSN has an invalid port") from None
    if not 0 < port < 65536:
        raise ValueError("mysql DSN has an invalid port")
    user, _, password = userinfo.partition(":")
    return MySQLSettings(
        driver=driver or DEFAULT_DRIVER, host=host.strip("[]") or "127.0.0.1", port=port,
        user=unquote(user) or "root", password=unquote(password), database=database,
        **_options(query),
    )


def parse_sqlite(dsn: str) -> str:
    """Return the file path of `sqlite:///path` (relative) or `sqlite:////abs/path`."""
    if not dsn.startswith("sqlite:///"):
        raise ValueError("sqlite DSN must look like sqlite:///relative/path.db or "
                         "sqlite:////absolute/path.db")
    path, _, query = dsn[len("sqlite:///"):].partition("?")
    if query:
        raise ValueError(f"sqlite DSN takes no parameters, got {query!r}")
    if not path or path == ":memory:" or path.endswith("/"):
        raise ValueError("sqlite DSN names no database file")
    return path


def validate(dsn: str) -> None:
    """Raise a one-line ValueError unless `dsn` is a DSN a store can open."""
    scheme = dsn.strip().partition("://")[0].lower()
    if not dsn.strip():
        raise ValueError("CMDB DSN is empty")
    if scheme == "sqlite":
        parse_sqlite(dsn.strip())
    elif scheme.partition("+")[0] == "mysql":
        parse_mysql(dsn)
    else:
        raise ValueError(f"CMDB DSN scheme {scheme + '://' if scheme else '(none)'} is not "
                         "supported; use mysql:// or sqlite:///")
