"""From the config file's `bkcmdb:` section to a bk-cmdb client, and a one-line probe of it.

The section (`settings.BkCmdbConfig`) is what an operator writes; the client's frozen
`BkCmdbSettings` is what the transport needs. The one thing in between is the app secret:
it may come inline (from the environment, `BKCMDB_BKCMDB__APP_SECRET`, which is how the
chart passes a Kubernetes Secret) or from a file (`app_secret_file`, a mounted Secret),
read here once at start. It leaves this module only inside `BkCmdbSettings`, whose repr
hides it, and never appears in an error message: a missing file is named by its path.

`probe` is what `check-config --connect` runs: one authenticated read, so "the URL answers"
and "the credentials work" are told apart in one line.
"""

from __future__ import annotations

from pathlib import Path

from synchronizer.bkcmdb import AuthError, BkCmdbClient, BkCmdbError, BkCmdbSettings
from synchronizer.settings import BkCmdbConfig, ConfigError

PROBE_CLUSTER = "bkcmdb-synchronizer-probe"
"""A cluster uid nobody uses: the probe lists it (an empty answer is a success)."""
PROBE_ATTEMPTS = 2
"""Tries of the probe's request: one retry absorbs a blip, a dead server fails fast."""


def app_secret(config: BkCmdbConfig) -> str:
    """The app secret, inline or read from `app_secret_file` (ConfigError naming the file)."""
    if config.app_secret_file:
        try:
            return Path(config.app_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"bkcmdb.app_secret_file: cannot read {config.app_secret_file}:"
                              f" {exc.strerror or type(exc).__name__}") from None
    return config.app_secret.get_secret_value()


def client_settings(config: BkCmdbConfig, **overrides: object) -> BkCmdbSettings:
    """The client's settings for the section (one-line ConfigError if they are unusable)."""
    values: dict[str, object] = dict(
        url=config.url, api=config.api, auth=config.auth, app_code=config.app_code,
        app_secret=app_secret(config), username=config.username,
        supplier_account=config.supplier_account, batch_size=config.batch_size,
        rate=config.rate, burst=config.burst, timeout=config.timeout)
    values.update(overrides)
    try:
        return BkCmdbSettings(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


def describe(config: BkCmdbConfig) -> str:
    """`http://cmdb (api kube, auth gateway)`: what the section points at, no secret."""
    return f"{config.url} (api {config.api}, auth {config.auth})"


async def probe(config: BkCmdbConfig, biz_id: int, *,
                request_timeout: float = 10.0) -> str | None:
    """One authenticated read against bk-cmdb; a one-line problem, or None when it works.

    api kube lists a cluster uid nobody uses in `biz_id`; api container lists the pods of
    such a cluster. Either needs valid credentials and a live bk-cmdb, and writes nothing.
    """
    try:
        settings = client_settings(config, max_attempts=PROBE_ATTEMPTS, timeout=request_timeout,
                                   backoff_max=1.0)
    except ConfigError as exc:
        return str(exc)
    async with BkCmdbClient(settings) as client:
        try:
            if config.api == "kube":
                await client.kube.list_clusters(biz_id, uids=[PROBE_CLUSTER])
            else:
                await client.container.list_pods(biz_id, PROBE_CLUSTER)
        except AuthError as exc:
            return f"credentials refused: {exc}"
        except BkCmdbError as exc:
            return f"cannot use {config.url}: {exc}"
    return None
