"""Helpers of the simulator's tests: a watch read line by line, paging, versions."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson


def rv(obj: dict[str, Any]) -> int:
    """An object's (or list's) resourceVersion as an int."""
    return int(obj["metadata"]["resourceVersion"])


class Watch:
    """A watch on `path` read line by line, as a client does."""

    def __init__(self, client: httpx.AsyncClient, path: str, *, query: bool = True,
                 **params: Any) -> None:
        if query:
            params = {"watch": "true", **params}
        self.request = client.stream("GET", path, params=params)

    async def __aenter__(self) -> Watch:
        self.response = await self.request.__aenter__()
        self.lines = self.response.aiter_lines()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.request.__aexit__(*exc)

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(10):
            return orjson.loads(await anext(self.lines))

    async def next_event(self) -> dict[str, Any]:
        """The next event that is not a BOOKMARK."""
        while True:
            event = await self.next()
            if event["type"] != "BOOKMARK":
                return event

    async def take(self, n: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(n)]

    async def rest(self) -> list[str]:
        async with asyncio.timeout(10):
            return [line async for line in self.lines]


async def list_all(client: httpx.AsyncClient, path: str, limit: int,
                   **params: Any) -> list[dict[str, Any]]:
    """Every page of a list; returns each page's decoded body."""
    pages: list[dict[str, Any]] = []
    token = None
    while True:
        query = dict(params, limit=limit, **({"continue": token} if token else {}))
        resp = await client.get(path, params=query)
        assert resp.status_code == 200, resp.text
        pages.append(resp.json())
        token = pages[-1]["metadata"].get("continue")
        if not token:
            return pages
