"""`ferry cron-connector --help` tells the truth about OpenFaaS Pro's nats_host/nats_port: the
connector uses NATS for its slot claims, from nats_url only."""

from __future__ import annotations

import subprocess
import sys


def test_cron_help_says_nats_host_is_not_read_because_claims_take_nats_url() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ferry", "cron-connector", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    unread = done.stdout.split("OpenFaaS settings not read", 1)[1]
    lines = {line.split()[0]: line for line in unread.splitlines()[1:] if line.strip()}
    for name in ("nats_host", "nats_port"):
        assert "does not use NATS" not in lines[name]
        assert "slot claims take nats_url" in lines[name]
    assert "nats_stream_replicas" not in lines  # read: the claims bucket's replicas
