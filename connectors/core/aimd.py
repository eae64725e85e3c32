"""An adaptive concurrency limit per function: grows while calls succeed, backs off on overload.

The algorithm is kept apart from its enforcement (as in Netflix's concurrency-limits): a caller
reports each call as a success or a drop (the function said it is overloaded: 429, or 503
with Retry-After), and reads `allowed`. Growth happens only while at least half the limit is
in use, so an idle function's limit does not creep up.

- The limit starts at its maximum: a function that never refuses is never slowed (a limit
  starting low would run long calls one at a time until the first ends).
- Additive increase: one per limit's worth of successes (one per window, as TCP); a quarter
  of that near the limit where the last drop happened, so a function at its capacity is
  probed rarely.
- On a drop, multiplicative decrease to `backoff` of the limit, once per window (a drop from
  a call that started before the last cut does not cut again); and every drop brings the limit
  down to the calls the function is still running, which it did accept. So the refusals of one
  over-full window (the first, typically) take the limit to about the function's capacity at
  once, not after one cut per window.
Broker-neutral, so the connectors can share it.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF = 0.75
NEAR_CEILING_SLOWDOWN = 4.0


@dataclass
class AimdLimit:
    """The limit of one function; `maximum` bounds it (worker slots, `ferry.max_inflight`)."""

    maximum: int
    limit: float = 0.0  # 0: start at the maximum
    backoff: float = BACKOFF
    generation: int = 0  # bumped at each cut
    ceiling: float = 0.0  # the limit when the last drop happened (0: none yet)

    def __post_init__(self) -> None:
        if self.maximum < 1:
            raise ValueError("maximum must be at least 1")
        self.limit = float(self.maximum) if self.limit <= 0 else min(self.limit, self.maximum)

    @property
    def allowed(self) -> int:
        """Calls that may run at once now."""
        return max(1, int(self.limit))

    def bound(self, maximum: int) -> None:
        """A new bound (e.g. the function's cap became known)."""
        self.maximum = max(1, maximum)
        self.limit = min(self.limit, self.maximum)

    def succeeded(self, inflight: int) -> None:
        """A call succeeded while `inflight` calls (it included) were running."""
        if inflight * 2 < self.limit:
            return
        step = 1.0 / self.limit
        if self.ceiling and self.ceiling - 1 <= self.limit < self.ceiling + 1:
            step /= NEAR_CEILING_SLOWDOWN
        self.limit = min(float(self.maximum), self.limit + step)

    def dropped(self, started_in: int, still_running: int) -> bool:
        """The function refused a call started in generation `started_in` while it was running
        `still_running` others; True if that was the window's cut."""
        cut = started_in == self.generation
        if cut:
            self.ceiling = self.limit
            self.limit *= self.backoff
            self.generation += 1
        self.limit = max(1.0, min(self.limit, float(still_running)))
        return cut
