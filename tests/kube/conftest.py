"""Every test of the Kubernetes wire runs on both event loops: the standard library's and
uvloop, which `synchronizer run` uses. Their transports differ (uvloop's are not
`asyncio.Transport` subclasses, their TLS and flow control are their own), and the watch
transport (`kube.wire`) sits directly on them."""

from __future__ import annotations

import asyncio

import pytest
import uvloop


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()
