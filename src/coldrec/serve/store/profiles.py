"""`StatedInterests`: each user's stated interests (the profile), stored under their pseudonymised key."""

from __future__ import annotations

import json

from coldrec.serve.privacy import Pseudonymizer

from .keys import StoreKeys, key_version
from .rows import decoded_profiles, encoded_interests
from .schema import KEY_VERSION, PROFILE, PROFILES, SET_PROFILE
from .statements import Run, Statements


class StatedInterests(Statements):
    keys: StoreKeys

    def set_profile(self, user_id: str, interests: list[str]) -> None:
        """Replace a user's stated interests (keyed by the store's key version inside the write)."""
        with self._transaction() as run:
            run(SET_PROFILE, (self._ids(run).user(user_id), encoded_interests(interests)))

    def profile(self, user_id: str) -> list[str]:
        """A user's stated interests ([] when none)."""
        with self._reads() as run:
            rows = run(PROFILE, (self._ids(run).user(user_id),))[0]
        interests: list[str] = json.loads(rows[0][0]) if rows else []
        return interests

    def _ids(self, run: Run) -> Pseudonymizer:
        """The pseudonymizer at the key version `run` reads (inside a write: the version the write keys by)."""
        return self.keys.at(key_version(run(KEY_VERSION, ())[0]))

    def profiles(self) -> dict[str, list[str]]:
        """Every stated-interest profile, by pseudonymised user key (for rebuilds)."""
        with self._reads() as run:
            return decoded_profiles(run(PROFILES, ())[0])
