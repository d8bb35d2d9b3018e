"""`StatedInterests`: each user's stated interests (the profile), stored under their pseudonymised key."""

from __future__ import annotations

import json

from .keys import StoreKeys, key_version
from .rows import decoded_profiles, encoded_interests
from .schema import KEY_VERSION, PROFILE, PROFILES, SET_PROFILE
from .statements import Statements


class StatedInterests(Statements):
    keys: StoreKeys

    def set_profile(self, user_id: str, interests: list[str]) -> None:
        """Replace a user's stated interests (keyed by the store's key version inside the write)."""
        with self._transaction() as run:
            ids = self.keys.at(key_version(run(KEY_VERSION, ())[0]))
            run(SET_PROFILE, (ids.user(user_id), encoded_interests(interests)))

    def profile(self, user_id: str) -> list[str]:
        """A user's stated interests ([] when none)."""
        with self._reads() as run:
            ids = self.keys.at(key_version(run(KEY_VERSION, ())[0]))
            rows = run(PROFILE, (ids.user(user_id),))[0]
        interests: list[str] = json.loads(rows[0][0]) if rows else []
        return interests

    def profiles(self) -> dict[str, list[str]]:
        """Every stated-interest profile, by pseudonymised user key (for rebuilds)."""
        with self._reads() as run:
            return decoded_profiles(run(PROFILES, ())[0])
