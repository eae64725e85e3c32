"""Benchmark: delayed calls fired by NATS message schedules, and what the feature costs others.

    .venv/bin/python bench/delayed_calls.py [--part spread|overhead|both] [--count 10000]
        [--fallback]

spread: one `nats-server -js` on 127.0.0.1 and the request stream as ferry makes it; `--count`
  calls are stored through ferry's publisher, all delayed to the same second (`--lead` seconds
  after the run starts, enough to store them all first). A pull consumer on the plain subject
  (as the worker's) takes and acks them as they fire. Prints how late the first, the median,
  the 99th percentile and the last one arrived after their time, and the spread (last - first).
  With `--fallback` the request stream has no schedules (an `OF_` stream holds its subjects, as
  OpenFaaS Pro's does): the calls wait on ferry's delayed stream and one worker's waker
  (`queue_worker.delay_waker`, run in this process) moves them.
overhead: the CPU a call WITHOUT delay or expiry headers pays for the feature, per call: the
  front door's head parse (which picks the headers out in its one pass) on a typical
  12-header request, interleaved with the same parse from a checkout without the feature
  (`--before`), and the worker's two checks (`CallClock.wait` and `CallClock.expired`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats
from nats.js import api as js_api
from prometheus_client import CollectorRegistry

from asyncq.codec import decode
from asyncq.delayed import delayed_stream_name
from asyncq.jetstream import ensure_streams
from asyncq.publisher import Publisher, build_request
from asyncq.timing import CallTiming
from bench.common import percentile, start_nats
from queue_worker.delay_waker import start_waker
from queue_worker.expiry import CallClock

STREAM = "bench-delayed"


async def spread(count: int, lead: float, fallback: bool = False) -> None:
    work = tempfile.mkdtemp(prefix="ferry-bench-delayed-")
    server, url = start_nats(work)
    try:
        nc = await nats.connect(url)
        js = nc.jetstream()
        holder = STREAM
        if fallback:  # a stream ferry serves as it is, without schedules
            holder = f"OF_{STREAM}"
            await js.add_stream(
                js_api.StreamConfig(
                    name=holder,
                    subjects=[STREAM, f"{STREAM}.*"],
                    retention=js_api.RetentionPolicy.WORK_QUEUE,
                    storage=js_api.StorageType.FILE,
                )
            )
        await ensure_streams(js, STREAM, f"{STREAM}-dead")
        publisher = Publisher(js, STREAM, stored_in=holder)
        waker = await start_waker(js, delayed_stream_name(STREAM), holder, STREAM)
        assert fallback == (waker is not None)
        due = float(int(time.time() + lead))  # a whole second, as "the same second" asks
        started = time.perf_counter()
        requests = [build_request("bench", body=b"x" * 1024) for _ in range(count)]
        for first in range(0, count, 500):
            await asyncio.gather(
                *(
                    publisher.enqueue(r, timing=CallTiming(not_before=due))
                    for r in requests[first : first + 500]
                )
            )
        stored = time.perf_counter() - started
        print(f"stored {count} delayed calls in {stored:.1f}s ({count / stored:,.0f}/s)")
        if time.time() >= due:
            raise SystemExit(f"storing took longer than --lead {lead}s: raise it")
        sub = await js.pull_subscribe(
            STREAM,
            durable="bench",
            stream=holder,
            config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.EXPLICIT),
        )
        lateness: list[float] = []
        early = 0
        deadline = due + 120
        while len(lateness) < count and time.time() < deadline:
            try:
                msgs = await sub.fetch(500, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            now = time.time()
            for msg in msgs:
                decode(msg.data)
                lateness.append(now - due)
                early += now < due
                await msg.ack()
        if waker is not None:
            waker.cancel()
            await asyncio.gather(waker, return_exceptions=True)
        await nc.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    lateness.sort()
    print(
        f"fired {len(lateness)}/{count}, early {early}; after their time: first "
        f"{lateness[0]:.3f}s, median {statistics.median(lateness):.3f}s, "
        f"p99 {percentile(lateness, 99):.3f}s, last {lateness[-1]:.3f}s; "
        f"spread {lateness[-1] - lateness[0]:.3f}s"
    )


HEAD = (
    b"POST /async-function/bench HTTP/1.1\r\nHost: gateway:8080\r\nUser-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\nContent-Type: application/json\r\nContent-Length: 0\r\n"
    b"X-Callback-Url: http://receiver:9000/cb\r\nX-Request-Id: 4f6c1f0e\r\n"
    b"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
    b"Accept-Encoding: gzip\r\nConnection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\n"
    b"Authorization: Bearer abc\r\n\r\n"
)


def _per_call(work: Callable[[], object], loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        work()
    return (time.perf_counter() - start) / loops * 1e6


def overhead(before: str, rounds: int = 7, loops: int = 100_000) -> None:
    """Per call without delay or expiry headers: the front door's head parse against the one
    in `before` (the file of an older checkout), and the worker's two checks."""
    from gateway.request_head import read_head

    if Path(before).exists():
        spec = importlib.util.spec_from_file_location("request_head_before", before)
        assert spec is not None and spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = old  # dataclasses look their module up
        spec.loader.exec_module(old)
        parse: list[tuple[float, float]] = []
        for round_ in range(rounds):  # which goes first alternates
            if round_ % 2:
                then = _per_call(lambda: old.read_head(HEAD, 1 << 20), loops)
                now = _per_call(lambda: read_head(HEAD, 1 << 20), loops)
            else:
                now = _per_call(lambda: read_head(HEAD, 1 << 20), loops)
                then = _per_call(lambda: old.read_head(HEAD, 1 << 20), loops)
            parse.append((now, then))
        now_median = statistics.median(p[0] for p in parse)
        then_median = statistics.median(p[1] for p in parse)
        print(
            f"front door head parse (12 headers): {now_median:.2f} µs, before "
            f"{then_median:.2f} µs (median of {rounds} interleaved rounds)"
        )
    request = build_request("bench", body=b"x")
    clock = CallClock(0.0, CollectorRegistry())

    class Msg:  # what the worker's checks read of a message without ferry's headers
        headers: dict[str, str] | None = {"Nats-Msg-Id": request.call_id}

    msg = Msg()
    checks = statistics.median(
        _per_call(lambda: (clock.wait(msg), clock.expired(msg, request)), loops)  # type: ignore[arg-type]
        - _per_call(lambda: None, loops)
        for _ in range(rounds)
    )
    print(f"worker, per message: {checks:.2f} µs for the not-before and expiry checks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("spread", "overhead", "both"), default="both")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--lead", type=float, default=30.0)
    parser.add_argument("--fallback", action="store_true", help="a stream without schedules")
    parser.add_argument(
        "--before",
        default="/work/main/gateway/request_head.py",
        help="gateway/request_head.py of a checkout without this feature, to compare with",
    )
    args = parser.parse_args()
    if args.part in ("overhead", "both"):
        overhead(args.before)
    if args.part in ("spread", "both"):
        asyncio.run(spread(args.count, args.lead, args.fallback))


if __name__ == "__main__":
    main()
