"""Who may call what: a read key for the shop's front end, a write (admin) key for everything else,
and the rule that an open (keyless) service listens on loopback only."""

import ipaddress
import secrets
from typing import Annotated, Literal

from fastapi import Header, HTTPException

from coldrec.serve.settings import Settings

Scope = Literal["read", "write"]
KEY_HEADER = "X-API-Key"


class ExposedServiceError(ValueError):
    """A keyless service asked to listen beyond this machine."""


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to serve writable endpoints without a key on an address other machines can reach."""
    if settings.api_key is None and not settings.trust_network and not is_loopback(settings.host):
        raise ExposedServiceError(
            f"--host {settings.host} without an API key would let anyone on the network write items and events: "
            "set COLDREC_API_KEY (or --api-key-file FILE), or pass --trust-network if every client is trusted"
        )


def require(settings: Settings, scope: Scope):
    """A FastAPI dependency: the request's X-API-Key must open `scope` (write opens everything)."""
    write = settings.api_key.get_secret_value().encode() if settings.api_key else None
    read = settings.read_key.get_secret_value().encode() if settings.read_key else None
    accepted = [key for key in ((write, read) if scope == "read" else (write,)) if key is not None]

    key_header = Header(description="Required when the service has keys: the read key opens GET endpoints, "
                                    "the write key all.")

    def check(x_api_key: Annotated[str | None, key_header] = None) -> None:
        if write is None:
            return
        given = (x_api_key or "").encode()
        if not any(secrets.compare_digest(given, key) for key in accepted):
            wrong_scope = read is not None and secrets.compare_digest(given, read)
            raise HTTPException(
                403 if wrong_scope else 401,
                [{"loc": ("header", KEY_HEADER), "type": "forbidden" if wrong_scope else "unauthorized",
                  "msg": ("the read key cannot write: use the write key" if wrong_scope
                          else "missing or wrong API key")}],
                headers=None if wrong_scope else {"WWW-Authenticate": KEY_HEADER},
            )

    return check
