"""`AdToken`: what a sponsored result carries so that its click can be charged: the campaign, the item and the price
the auction set, signed so that a client can neither forge nor alter it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

#: a click on an ad shown longer ago than this is still recorded as an event, but not charged
VALID_S = 24 * 3600


class TokenError(ValueError):
    """An ad token that is malformed, not signed by this store, expired, or for another item."""


@dataclass(frozen=True)
class AdToken:
    campaign_id: str
    item_id: str
    price: float  # what a click costs the campaign (second price)
    issued: float  # unix seconds

    def sign(self, secret: bytes) -> str:
        payload = json.dumps([self.campaign_id, self.item_id, round(self.price, 6), round(self.issued, 3)],
                             separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"

    @classmethod
    def verify(cls, token: str, secret: bytes, now: float | None = None) -> AdToken:
        """The token's content; TokenError unless `secret` signed it less than VALID_S ago."""
        try:
            encoded, signature = token.split(".")
            payload = _unb64(encoded)
            valid = hmac.compare_digest(_unb64(signature), _mac(secret, payload))
        except (ValueError, TypeError):
            raise TokenError("not an ad token") from None
        if not valid:
            raise TokenError("not signed by this store")
        campaign_id, item_id, price, issued = json.loads(payload)
        now = time.time() if now is None else now
        if now - issued > VALID_S:
            raise TokenError(f"expired (issued {now - issued:.0f} s ago; valid {VALID_S} s)")
        return cls(str(campaign_id), str(item_id), float(price), float(issued))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"ad:" + payload, hashlib.sha256).digest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
