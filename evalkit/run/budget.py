"""The spending cap (`--max-cost-usd`): a call is issued only if it cannot cross the cap.

Rules, for every call the runner would make (cache hits are free and never wait):
1. Its worst case is the provider's `worst_case_cost(request)`: an upper bound of the prompt's
   tokens at the input price plus the request's output limit at the output price. A provider
   without one (the local provider, test fakes) is charged the dearest call seen so far: a
   best effort, not a guarantee.
2. It is issued only if spent + the worst case of every call in flight + its own worst case
   <= cap. `spent` covers the whole run: what earlier sessions paid (the journal) plus what
   they paid but never journaled (their open calls, at their worst case) — the cap is the
   run's, not the session's.
3. If it does not fit while other calls are in flight, it waits for them to settle and checks
   again (a call's worst case is usually far above what it costs, so room comes back).
4. If it does not fit with nothing in flight, that is the budget stop: no further call is
   issued this session (the stop is sticky, so a run never ends with a random subset of
   items), and the runner leaves the rest unjournaled for `--resume` with a higher cap.
5. Until one call of the session has been answered, one call is in flight at a time: a
   server that ignores output limits shows it on one call (the provider then raises its
   worst case) instead of on a first wave of 32 calls reserved at a trusted limit.
   That one answer had no bound: against a server that honours neither max_tokens nor
   max_completion_tokens it alone can cross the cap, and what the provider reserves after it
   (the longest answer seen, times a factor) is an estimate, not a bound. A run that ends
   over its cap says so and why (evalkit/cli/run.py).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


def usd4(x: float) -> str:
    """Dollars to four significant digits ($0.04812, $1.250), so that a spend just under its
    cap never prints as equal to it."""
    if x == 0:
        return "$0"
    return f"${x:.{max(2, 3 - math.floor(math.log10(abs(x))))}f}"


class Budget:
    """The run's spend against its cap; `reserve` before a call, `settle` after it."""

    def __init__(self, cap_usd: float | None, *, spent_before_usd: float = 0.0,
                 dearest_call_usd: float = 0.0):
        self.cap_usd = cap_usd
        self.spent_before_usd = spent_before_usd
        self.dearest_call_usd = dearest_call_usd  # rule 1's stand-in, over the whole run
        self.spent_usd = spent_before_usd   # the whole run's, this session included
        self.reserved_usd = 0.0             # worst cases of the calls in flight
        self.in_flight = 0
        self.calibrated = False             # a call of this session has been answered
        self.stopped = False                # rule 4: the budget stop
        self._changed = asyncio.Event()
        self._waiting = 0                   # reserve() calls waiting on `_changed`

    @property
    def session_spent_usd(self) -> float:
        return self.spent_usd - self.spent_before_usd

    def fits(self, worst_usd: float) -> bool:
        return self.cap_usd is None or (self.spent_usd + self.reserved_usd + worst_usd
                                        <= self.cap_usd)

    def take(self, worst_usd: float) -> bool:
        """Reserve `worst_usd` now if the call may go at once (rules 2 and 5); False: it
        must wait, or it is the stop, which `reserve` decides. Most calls go at once, and
        calling this first spares them `reserve`'s coroutine."""
        if self.stopped or not (self.cap_usd is None or (
                self.fits(worst_usd) and (self.calibrated or self.in_flight == 0))):
            return False
        self.reserved_usd += worst_usd
        self.in_flight += 1
        return True

    async def reserve(self, worst_case: Callable[[], float]) -> float | None:
        """Wait until the call may go and return the worst case reserved for it, or None on
        the budget stop. `worst_case()` is asked again after every wait: what the calls
        before it showed (a server ignoring limits, a dearer call) raises it."""
        while True:
            worst_usd = worst_case()
            if self.take(worst_usd):
                return worst_usd
            if self.stopped:
                return None
            if not self.fits(worst_usd) and self.in_flight == 0:
                self.stopped = True
                self._wake()
                return None
            self._waiting += 1
            try:
                await self._changed.wait()  # no await between the check and here: no lost
            finally:                        # wake-up
                self._waiting -= 1

    def settle(self, worst_usd: float, cost_usd: float, *, answered: bool) -> None:
        """A reserved call ended: it cost `cost_usd` (0 for a failure that was not billed)."""
        self.reserved_usd = max(0.0, self.reserved_usd - worst_usd)
        self.in_flight -= 1
        self.spent_usd += cost_usd
        self.dearest_call_usd = max(self.dearest_call_usd, cost_usd)
        self.calibrated = self.calibrated or answered
        self._wake()

    def stop(self) -> None:
        """No further call this session (an interrupt, an unreachable server)."""
        self.stopped = True
        self._wake()

    def _wake(self) -> None:
        if not self._waiting:  # nobody to wake (no cap, or room all along): no new Event
            return
        event, self._changed = self._changed, asyncio.Event()
        event.set()
