"""A function with a fixed capacity: past it, it answers 429 (as an overloaded service does),
and it counts from its own side how many calls it ran at once."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.support.http import Call, Handler


class CapacityFunction:
    def __init__(self, capacity: int, seconds: float, settle: int = 0) -> None:
        self.capacity = capacity
        self.settle = settle  # calls accepted before `peak_arriving` is counted
        self.seconds = seconds
        self.running = 0
        self.peak = 0  # most calls it accepted at once
        self.arriving = 0
        self.peak_arriving = 0  # most calls sent at once once settled, refused ones included
        self.accepted: list[Call] = []
        self.refused = 0

    def handler(self) -> Handler:
        async def handle(call: Call) -> web.Response:
            self.arriving += 1
            if len(self.accepted) >= self.settle:
                self.peak_arriving = max(self.peak_arriving, self.arriving)
            try:
                if self.running >= self.capacity:
                    self.refused += 1
                    await asyncio.sleep(0.001)  # a refusal takes a moment, as it would
                    return web.Response(status=429, text="too many")
                self.running += 1
                self.peak = max(self.peak, self.running)
                self.accepted.append(call)
                try:
                    await asyncio.sleep(self.seconds)
                finally:
                    self.running -= 1
                return web.Response(text="ok")
            finally:
                self.arriving -= 1

        return handle


def always_refusing() -> Handler:
    """A function that answers 429 to every call."""

    async def refuse(call: Call) -> web.Response:
        return web.Response(status=429, text="too many")

    return refuse
