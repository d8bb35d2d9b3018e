"""Budget pacing: a daily budget spread over the (UTC) day instead of spent in its first hours."""

from __future__ import annotations

DAY = 86_400
#: how far ahead of an even spread a campaign may spend (a share of its daily budget)
LEAD = 0.1


def day_of(moment: float) -> int:
    """The UTC day number of unix time `moment`: the day a click's spend is booked on."""
    return int(moment // DAY)


def paced_budget(daily_budget: float, now: float, lead: float = LEAD) -> float:
    """How much of today's budget may be spent by `now`: an even spread over the UTC day, `lead` ahead of it.
    A campaign whose spend today has reached this takes no part in auctions until the day catches up."""
    elapsed = (now % DAY) / DAY
    return float(daily_budget) * min(1.0, elapsed + lead)
