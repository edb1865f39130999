"""`check-config --connect` for the registries: reach each configured one, once.

The SyncCluster registry is reached by listing one SyncCluster in the home cluster (which
also proves the CRD is installed and readable with these credentials); the BCS cluster
manager by listing its clusters with the gateway token. Topologies live in the CMDB,
which `check-config` reaches anyway. One line per problem, naming the key; never a token.
"""

from __future__ import annotations

import asyncio

from synchronizer.settings import Settings

from .bcs import BcsRegistry
from .home import HomeCluster, home_endpoint

TIMEOUT = 20.0
"""Seconds each registry has to answer."""


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def reach_registries(settings: Settings) -> list[str]:
    """One problem line per configured registry that cannot be reached."""
    reg = settings.registries
    problems: list[str] = []
    if reg.crd.enabled:
        home = HomeCluster(home_endpoint(reg.crd))
        try:
            async with asyncio.timeout(TIMEOUT):
                await home.reachable(reg.crd.namespace)
        except TimeoutError:
            problems.append(f"registries.crd: the home cluster did not answer within"
                            f" {TIMEOUT:g} s")
        except Exception as exc:  # every failure is the operator's to read, in one line
            problems.append(f"registries.crd: {_line(exc)}")
        finally:
            await home.aclose()
    if reg.http.url:
        bcs = BcsRegistry(reg.http.url, reg.http.token.get_secret_value(), interval=0,
                          insecure=reg.http.insecure_skip_tls_verify,
                          ca_file=reg.http.ca_file or None)
        try:
            async with asyncio.timeout(TIMEOUT):
                await bcs.fetch()
        except TimeoutError:
            problems.append(f"registries.http: no answer within {TIMEOUT:g} s")
        except Exception as exc:
            problems.append(f"registries.http: {_line(exc)}")
    return problems
