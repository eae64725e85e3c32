"""Micro-benchmark: the queue worker's ledger work per call, in CPU time, against a real
nats-server.

    PYTHONPATH=. .venv/bin/python bench/worker_ledger_cpu.py [--calls N] [--repeats R]
        [--body BYTES] [--ids front-door|random]

Each call goes through what the worker does with the ledger in the `instant` scenario of
bench/queue_worker.py (an echo function answering 1 KiB, a callback): the cancel check,
`running`, the final state with its callback pending, the same with the callback delivered,
and the writer sending the one surviving write and reading JetStream's answer per batch. The
calls come 32 at a time, with a 2 ms pause between (about four times the worker's rate in
bench/queue_worker.py, so the writer's batches are fuller than there). Printed per repeat:
this process's CPU time per call (time.process_time, so the machine's load inflates it less
than wall time) and nats-server's CPU per call (/proc), both medians at the end; the ledger
messages and bytes stored per call; the writer's batches per call (one JetStream answer
each). The requests and results are made beforehand.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats
import uvloop
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncq.codec import QueueRequest
from bench.common import cpu_seconds, start_nats
from connectors.core.invoker import InvocationResult
from ledger.settings import CallLedgerSettings
from ledger.sheets import SHEET_CALLS, call_id_on, new_sheet
from queue_worker.worker_ledger import WorkerLedger

BODY = b"x" * 1024
CHUNK = 32


def make_calls(
    count: int, ids: str = "front-door", body: bytes = BODY
) -> list[tuple[QueueRequest, InvocationResult]]:
    calls = []
    sheet = new_sheet()
    for number in range(count):
        if number % SHEET_CALLS == 0:
            sheet = new_sheet()
        call_id = str(uuid.uuid4()) if ids == "random" else call_id_on(sheet)
        request = QueueRequest(
            function="bench",
            body=body,
            header={"X-Call-Id": [call_id], "X-Start-Time": [str(time.time_ns())]},
            callback_url="http://127.0.0.1:8080/cb",
        )
        headers = CIMultiDict(
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(len(body))),
                ("Date", "Mon, 07 Dec 2026 06:40:00 GMT"),
            ]
        )
        result = InvocationResult(
            function="bench",
            status=200,
            attempt=1,
            duration=0.000731,
            body=body,
            headers=CIMultiDictProxy(headers),
        )
        calls.append((request, result))
    return calls


async def one_repeat(
    ledger: WorkerLedger, calls: list[tuple[QueueRequest, InvocationResult]]
) -> float:
    start = time.process_time()
    for index in range(0, len(calls), CHUNK):
        for request, result in calls[index : index + CHUNK]:
            if ledger.is_cancelled(request):
                continue
            ledger.running(request, 1)
            ledger.finished(request, result, succeeded=True)
            ledger.finished(request, result, succeeded=True, callback_outcome="delivered")
        await asyncio.sleep(0.002)
    writer = ledger._writer
    assert writer is not None
    await writer._idle.wait()  # every write sent and answered
    return time.process_time() - start


async def main(args: argparse.Namespace) -> None:
    store = tempfile.mkdtemp(prefix="ferry-bench-ledger-cpu-")
    server, url = start_nats(store)
    try:
        nc = await nats.connect(url)
        js = nc.jetstream()
        ledger = WorkerLedger(CallLedgerSettings(), CollectorRegistry(), replicas=1)
        await ledger.start(nc, js)
        await one_repeat(ledger, make_calls(2000))  # warm up
        ours, theirs = [], []
        for repeat in range(args.repeats):
            calls = make_calls(args.calls, args.ids, b"x" * args.body)
            stored = (await js.stream_info("KV_faas-calls")).state
            batches = ledger._writer._next if ledger._writer else 0
            before = cpu_seconds(server.pid)
            cpu = await one_repeat(ledger, calls)
            await asyncio.sleep(0.2)  # let nats-server finish storing
            server_cpu = cpu_seconds(server.pid) - before
            now = (await js.stream_info("KV_faas-calls")).state
            batches = (ledger._writer._next if ledger._writer else 0) - batches
            ours.append(cpu / args.calls * 1e6)
            theirs.append(server_cpu / args.calls * 1e6)
            print(
                f"repeat {repeat + 1}: worker ledger {ours[-1]:.2f} µs CPU/call,"
                f" nats-server {theirs[-1]:.2f} µs CPU/call,"
                f" {(now.messages - stored.messages) / args.calls:.3f} messages"
                f" and {(now.bytes - stored.bytes) / args.calls:.0f} bytes stored/call,"
                f" {batches / args.calls:.3f} batches (JetStream answers)/call"
            )
        print(
            f"median: worker ledger {statistics.median(ours):.2f} µs CPU/call"
            f" (lowest {min(ours):.2f}), nats-server {statistics.median(theirs):.2f} µs/call"
        )
        await ledger.close()
        await nc.close()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--body", type=int, default=len(BODY), help="bytes in each call's body and answer"
    )
    parser.add_argument(
        "--ids",
        choices=("front-door", "random"),
        default="front-door",
        help="call ids as `ferry gateway` makes them (64 on a sheet), or random",
    )
    uvloop.run(main(parser.parse_args()))  # as the worker runs
