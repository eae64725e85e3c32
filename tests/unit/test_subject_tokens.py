"""Hashed names are the same in every process: the gateway publishes a named queue's call on a
subject and the worker, another process, must pull from the same one; the ledger's keys are
written by one process and read by another. A per-process hash (Python's `hash()`) would give
each process its own subjects, so digests are pinned here and compared across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asyncq.layout import dead_letter_subject, durable_name, hashed_token, queue_subject
from ledger.entries import call_token

# SHA-256 of each name's UTF-8 bytes (a lone surrogate as its "surrogatepass" bytes), as
# `printf 'a b' | sha256sum` prints it.
PINNED = {
    "a b": "c8687a08aa5d6ed2044328fa6a697ab8e96dc34291e8c2034ae8c38e6fcc6d65",
    "slow lane/é": "090db20295447347adf04f064e01e55582c7582b4a8ceb8114957a60de840611",
    "a\ud800": "25819b9b43d499092eb2be7b6f27ae28439eee434cea4490191ab4ccb8f3409c",
}

NAMES = [*PINNED, "q" * 65, "*.>", "team/a b"]

_TOKENS = """
import json, sys
from asyncq.layout import dead_letter_subject, durable_name, queue_subject
from ledger.entries import call_token
names = json.loads(sys.stdin.read())
print(json.dumps([
    [queue_subject("faas-request", n), durable_name(n),
     dead_letter_subject("faas-dead-letter", n), call_token(n)]
    for n in names
]))
"""


@pytest.mark.parametrize("name", PINNED)
def test_a_hashed_token_is_the_pinned_sha256_digest(name: str) -> None:
    digest = PINNED[name]
    assert hashed_token(name) == "_h" + digest[:32]
    assert queue_subject("faas-request", name) == "faas-request._h" + digest[:32]
    assert durable_name(name) == "_h" + digest[:32] + "-workers"
    assert dead_letter_subject("faas-dead-letter", name) == "faas-dead-letter._h" + digest[:32]
    assert call_token(name) == "=" + digest[:48]


def _tokens_in_a_new_process(hash_seed: str) -> list[list[str]]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", _TOKENS],
        input=json.dumps(NAMES),  # JSON escapes the lone surrogate, so it arrives whole
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],  # the checkout's modules, as here
        check=True,
        timeout=60,
    )
    tokens: list[list[str]] = json.loads(done.stdout)
    return tokens


def test_every_process_computes_the_same_subjects_durables_and_ledger_keys() -> None:
    here = [
        [
            queue_subject("faas-request", n),
            durable_name(n),
            dead_letter_subject("faas-dead-letter", n),
            call_token(n),
        ]
        for n in NAMES
    ]
    # two processes whose str hashes certainly differ from each other
    assert _tokens_in_a_new_process("1") == here
    assert _tokens_in_a_new_process("2") == here
