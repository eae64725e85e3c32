"""The calls `bench/queue_worker.py` publishes: a 1 KiB body, call ids made as the front door
or as an OpenFaaS gateway makes them, optionally spread over several functions and carrying a
function's annotations."""

from __future__ import annotations

from asyncq.codec import QueueRequest
from asyncq.publisher import build_request, new_call_id
from ledger.sheets import SHEET_CALLS, call_id_on, new_sheet

BODY = b"x" * 1024
# A function's annotations as `--annotated` puts them in every call (the front door copies the
# function's own): OpenFaaS retry and scaling ones and ferry's breaker and limit, none of which
# changes what the instant function does (its limit is the worker's max_inflight).
ANNOTATIONS = {
    "com.openfaas.scale.min": "1",
    "com.openfaas.scale.max": "20",
    "com.openfaas.retry.attempts": "5",
    "com.openfaas.retry.codes": "429,502,503,504",
    "com.openfaas.retry.min_wait": "500ms",
    "com.openfaas.retry.max_wait": "30s",
    "ferry.breaker.failures": "20",
    "ferry.breaker.open_for": "30s",
    "ferry.max_inflight": "64",
}


class CallMaker:
    """Makes a run's calls. `ids`: "front-door" puts them on sheets of `SHEET_CALLS` (the
    worker's ledger can gather their final entries), "random" gives each a random UUID;
    `functions`: spread in turn over `bench-0` ... (one function: `bench`)."""

    def __init__(self, callback: str, ids: str, functions: int, annotated: bool) -> None:
        self.callback = callback
        self.random_ids = ids == "random"
        self.names = [f"bench-{n}" for n in range(functions)] if functions > 1 else ["bench"]
        self.annotations = ANNOTATIONS if annotated else None
        self._sheet = new_sheet()
        self._made = 0

    def new_id(self) -> str:
        if self.random_ids:
            return new_call_id()
        if self._made % SHEET_CALLS == 0 and self._made:
            self._sheet = new_sheet()
        self._made += 1
        return call_id_on(self._sheet)

    def requests(self, count: int, with_callback: bool = True) -> list[QueueRequest]:
        names = self.names
        return [
            build_request(
                names[index % len(names)],
                body=BODY,
                callback_url=self.callback if with_callback else "",
                new_id=self.new_id,
                annotations=self.annotations,
            )
            for index in range(count)
        ]
