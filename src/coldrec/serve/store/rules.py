"""`MerchandisingRules`: the shop's rules (`coldrec.rank.rules.Rule`'s fields as JSON) and their version, which
grows with every rule added or deleted so that every process sharing the store sees the change."""

from __future__ import annotations

import time

from .rows import decoded_rules, encoded_rule, new_rule_id
from .schema import BUMP_RULES_VERSION, DELETE_RULE, INSERT_RULE, RULES_VERSION, SELECT_RULES
from .statements import Statements


class MerchandisingRules(Statements):
    def add_rule(self, rule: dict) -> str:
        """Store a rule (its fields as a JSON object; `coldrec.rank.rules.Rule`'s names) under a new id; returns
        the id."""
        rule_id = new_rule_id()
        with self._transaction() as run:
            run(INSERT_RULE, (rule_id, encoded_rule(rule), time.time()))
            run(BUMP_RULES_VERSION, ())
        return rule_id

    def rules(self) -> list[dict]:
        """Every stored rule (with its rule_id), oldest first."""
        with self._reads() as run:
            return decoded_rules(run(SELECT_RULES, ())[0])

    def delete_rule(self, rule_id: str) -> bool:
        """Delete a rule; False if there is none by that id."""
        with self._transaction() as run:
            deleted = run(DELETE_RULE, (rule_id,))[1]
            if deleted:
                run(BUMP_RULES_VERSION, ())
        return bool(deleted)

    def rules_version(self) -> int:
        """Grows with every rule added or deleted (by any process or host sharing the store)."""
        with self._reads() as run:
            return int(run(RULES_VERSION, ())[0][0][0])
