"""Benchmark: what the call ledger costs, front door and queue worker, ledger on against off.

    .venv/bin/python bench/call_ledger.py [--part gateway|worker|both] [--count N] [--rounds R]

gateway: one nats-server and two `ferry gateway` processes (standalone mode), one with
  `call_ledger=true`, one with `false`, each on its own stream; in every round the same load
  (64 keep-alive connections POSTing 1 KiB bodies to /async-function/bench, as bench/gateway.py)
  goes to one, then the other, alternating which goes first. The result is the median ratio
  on/off of accepted calls/s.
worker: bench/queue_worker.py's `instant` scenario (instant function, callbacks, max_inflight
  64; one ledger write per message: `running` and the callback-pending state are held and
  superseded by the final state with its callback's outcome) run with the
  ledger off and on, alternating, `--rounds` times each. The result is the median ratio on/off
  of end-to-end messages/s.

All on 127.0.0.1, every phase bounded by --count messages and --seconds.
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
import nats.js.errors
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Child, free_port, start_nats, wait_for_port
from bench.gateway import GATEWAY_MAIN, gateway_posts, purge
from bench.gateway_load import CpuMeter


async def gateway_part(args: argparse.Namespace) -> float:
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-ledger-"))
    server, nats_url = start_nats(str(work / "js"))
    functions = work / "functions.yml"
    functions.write_text(
        yaml.safe_dump({"functions": [{"name": "bench", "url": "http://127.0.0.1:9"}]})
    )
    gateways: dict[str, tuple[Child, int]] = {}
    try:
        for ledger in ("off", "on"):
            port = free_port()
            child = Child(
                [sys.executable, "-c", GATEWAY_MAIN],
                env={
                    "nats_url": nats_url,
                    "nats_stream": f"bench-ledger-{ledger}",
                    "call_ledger": "true" if ledger == "on" else "false",
                    "functions_file": str(functions),
                    "port": str(port),
                    "listen_host": "127.0.0.1",
                    "health_port": "0",
                    "health_host": "127.0.0.1",
                },
            )
            gateways[ledger] = (child, port)
            wait_for_port(port)
        ratios: list[float] = []
        nats_cpu: dict[str, list[float]] = {"on": [], "off": []}
        for round_ in range(1, args.rounds + 1):
            order = ("off", "on") if round_ % 2 else ("on", "off")
            rates: dict[str, float] = {}
            for ledger in order:
                child, port = gateways[ledger]
                writes = await ledger_messages(nats_url)
                before = server.cpu_seconds()
                result, cpu = await CpuMeter(child, server).measure(gateway_posts(port, args))
                calls = max(1, len(result.latencies))
                nats_cpu[ledger].append((server.cpu_seconds() - before) / calls * 1e6)
                writes = await ledger_messages(nats_url) - writes
                rates[ledger] = result.rate
                await purge(nats_url, f"bench-ledger-{ledger}")
                print(f"round {round_} ledger {ledger}: {result.line().strip()}")
                print(f"{cpu}; ledger messages per call {writes / calls:.3f}")
            ratios.append(rates["on"] / rates["off"])
            print(f"  on / off: {ratios[-1]:.0%}")
        median = statistics.median(ratios)
        on, off = statistics.median(nats_cpu["on"]), statistics.median(nats_cpu["off"])
        print(
            f"gateway, ledger on / off over {len(ratios)} rounds: median {median:.0%}, "
            f"lowest {min(ratios):.0%}, highest {max(ratios):.0%} (target: at least 95%); "
            f"nats-server CPU per call, median: on {on:.1f} µs, off {off:.1f} µs, "
            f"on / off {on / off:.0%} (target: at most 110%)"
        )
        return median
    finally:
        for child, _ in gateways.values():
            child.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


async def ledger_messages(nats_url: str, bucket: str = "faas-calls") -> int:
    """Messages ever stored in the ledger's bucket (its stream's last sequence)."""
    nc = await nats.connect(nats_url)
    try:
        return int((await nc.jetstream().stream_info(f"KV_{bucket}")).state.last_seq)
    except nats.js.errors.NotFoundError:
        return 0
    finally:
        await nc.close()


def worker_part(args: argparse.Namespace) -> float:
    from bench.queue_worker import SCENARIOS, _run

    ratios: list[float] = []
    cpu: dict[str, list[float]] = {"on": [], "off": []}  # worker µs per message
    server: dict[str, list[float]] = {"on": [], "off": []}  # nats-server µs per message
    for round_ in range(1, args.rounds + 1):
        order = ("off", "on") if round_ % 2 else ("on", "off")
        rates: dict[str, float] = {}
        for ledger in order:
            # the worker child inherits this process environment
            os.environ["call_ledger"] = "true" if ledger == "on" else "false"  # noqa: SIM112
            scenario = SCENARIOS[args.scenario](args.count)
            scenario.ids = args.ids
            results = _run(scenario)
            rates[ledger] = results["messages/s end to end"]
            ceiling = results.get("ratio to ceiling")
            beside = f", {ceiling:.0%} of the raw POST ceiling beside it" if ceiling else ""
            print(
                f"round {round_} ledger {ledger}: {rates[ledger]:,.0f} msgs/s end to end, "
                f"worker {results['worker CPU µs/message']:.0f} µs CPU per message, "
                f"nats-server {results['nats-server CPU µs/message']:.0f}{beside}"
            )
            cpu[ledger].append(results["worker CPU µs/message"])
            server[ledger].append(results["nats-server CPU µs/message"])
        ratios.append(rates["on"] / rates["off"])
        print(f"  on / off: {ratios[-1]:.0%}")
    os.environ.pop("call_ledger", None)
    median = statistics.median(ratios)
    print(
        f"queue worker, ledger on / off over {len(ratios)} rounds: median {median:.0%}, "
        f"lowest {min(ratios):.0%}, highest {max(ratios):.0%}"
    )
    for name, figures in (("worker", cpu), ("nats-server", server)):
        on, off = statistics.median(figures["on"]), statistics.median(figures["off"])
        print(f"{name} CPU per message, medians: on {on:.0f} µs, off {off:.0f} µs, {on / off:.2f}x")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("gateway", "worker", "both"), default="both")
    parser.add_argument("--count", type=int, default=10_000, help="messages per phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound per phase")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="on/off pairs per part")
    parser.add_argument(
        "--scenario",
        choices=("instant", "slow-callbacks"),
        default="instant",
        help="the worker part's bench/queue_worker.py scenario",
    )
    parser.add_argument(
        "--ids",
        choices=("front-door", "random"),
        default="front-door",
        help="the worker part's call ids: as `ferry gateway` makes them, or random",
    )
    args = parser.parse_args()
    args.count = min(args.count, 20_000)
    if args.part in ("gateway", "both"):
        asyncio.run(gateway_part(args))
    if args.part in ("worker", "both"):
        worker_part(args)


if __name__ == "__main__":
    main()
