"""What tracing costs: CPU per call of the queue worker and the front door, tracing off, on at
100% sampling, and on with a 1% ratio sampler, in interleaved runs.

    .venv/bin/python bench/tracing.py [--rounds 3] [--count 5000]
    .venv/bin/python bench/tracing.py --per-span [--count 20000]

Each round runs `bench/queue_worker.py --scenario instant` and `bench/gateway.py --scenario
async --rounds 1` once per mode, the modes one after the other (this machine's speed drifts
from one minute to the next), with the OTEL_* variables of the mode in the environment their
ferry processes inherit. With tracing on, spans go to `bench/otlp_sink.py` (its own process),
so the CPU figures include building, batching, encoding and sending them. Medians count.

`--per-span` measures, in one process and without the rest of a call around it, the CPU of the
front door's `send` span (made, its context written into the queued call's header, ended and
exported), per mode: what one span costs, apart from the noise of a whole run.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "off": {},
    "on, 100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "on, 1%": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
    },
}
WORKER = re.compile(r"worker CPU µs/message\s+([\d.]+)")
GATEWAY = re.compile(r"gateway (\d+) µs CPU per call")


def run(script: str, args: list[str], env: dict[str, str], pattern: re.Pattern[str]) -> float:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    found = [float(m) for m in pattern.findall(done.stdout)]
    if not found:
        raise SystemExit(f"{script}: no figure in\n{done.stdout}\n{done.stderr}")
    return found[0]


PER_SPAN = """
import os, sys, time
from connectors.core import tracing
tracing.configure(os.environ)
tracing.start("ferry-bench", os.environ)
from asyncq.publisher import build_request
count = int(sys.argv[1])
calls = [build_request("bench", headers=[("X-A", "b")] * 8) for _ in range(count)]
started = time.process_time()
if tracing.ENABLED:
    from connectors.core import spans
    for call in calls:
        spans.start_send("bench", "nats", "faas-request", call.call_id, call.header).end()
tracing.stop()  # the export of what is still queued counts too
print((time.process_time() - started) / count * 1e6)
"""


def per_span(count: int, port: int) -> None:
    for mode, extra in MODES.items():
        if mode == "off":
            continue
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", **extra}
        env.update(PYTHONPATH=str(ROOT), OTEL_BSP_MAX_QUEUE_SIZE=str(count))
        figures = []
        for _ in range(5):
            done = subprocess.run(
                [sys.executable, "-c", PER_SPAN, str(count)],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                check=True,
            )
            figures.append(float(done.stdout.strip().splitlines()[-1]))
        print(
            f"  {mode:9s} send span: median {statistics.median(figures):5.1f} µs CPU "
            f"(lowest {min(figures):.1f})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--per-span", action="store_true", help="one span's CPU, in-process")
    args = parser.parse_args()
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "otlp_sink.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for_port(port)
    if args.per_span:
        try:
            per_span(args.count, port)
        finally:
            sink.terminate()
            sink.wait()
        return
    figures: dict[str, dict[str, list[float]]] = {m: {"worker": [], "gateway": []} for m in MODES}
    try:
        for round_ in range(1, args.rounds + 1):
            for mode, extra in MODES.items():
                env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", **extra}
                if mode == "off":
                    env = {}
                count = ["--count", str(args.count)]
                worker = run("queue_worker.py", ["--scenario", "instant", *count], env, WORKER)
                gateway = run(
                    "gateway.py", ["--scenario", "async", "--rounds", "1", *count], env, GATEWAY
                )
                figures[mode]["worker"].append(worker)
                figures[mode]["gateway"].append(gateway)
                print(
                    f"round {round_} {mode:9s} worker {worker:6.1f} µs/message, "
                    f"gateway {gateway:4.0f} µs/call",
                    flush=True,
                )
    finally:
        sink.send_signal(signal.SIGTERM)
        print(sink.communicate(timeout=30)[0].strip())
    print("\nmedians (CPU per call)")
    base = {part: statistics.median(figures["off"][part]) for part in ("worker", "gateway")}
    for mode, parts in figures.items():
        cells = []
        for part in ("worker", "gateway"):
            median = statistics.median(parts[part])
            cells.append(f"{part} {median:6.1f} µs ({median - base[part]:+5.1f})")
        print(f"  {mode:9s} " + ", ".join(cells))


if __name__ == "__main__":
    main()
