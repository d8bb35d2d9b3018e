"""Who is this shopper now: interest vectors from history, stated interests and queries."""

from coldrec.profile.interests import (
    EVENT_WEIGHTS,
    InterestProfiles,
    build_interest_profiles,
)

__all__ = ["EVENT_WEIGHTS", "InterestProfiles", "build_interest_profiles"]
