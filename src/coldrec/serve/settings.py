"""Service settings: command-line values first, then the environment, then defaults.

Secrets never come from the command line (where `ps` shows them): the keys come from the
environment or from files named on the command line.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from coldrec.ads.auction import AdPolicy

STATIC_DIR = Path(__file__).resolve().parent / "static"
DATABASE_FILE = "coldrec.sqlite"
#: setting -> the environment variable holding the secret itself
SECRET_VARIABLES = {"id_key": "COLDREC_ID_KEY", "api_key": "COLDREC_API_KEY", "read_key": "COLDREC_READ_KEY"}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Path("coldrec-state")  # the SQLite database
    id_key: SecretStr | None = None  # pseudonymisation key; env COLDREC_ID_KEY; else the key file
    id_key_file: Path | None = None  # env COLDREC_ID_KEY_FILE; default ~/.config/coldrec/id.key (never in state_dir)
    api_key: SecretStr | None = None  # the write (admin) key, opens every endpoint; env COLDREC_API_KEY
    read_key: SecretStr | None = None  # opens the GET endpoints only (a shop's front end); env COLDREC_READ_KEY
    trust_network: bool = False  # allow a keyless service on a non-loopback address
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch: int = Field(1000, ge=1)  # events or items per POST
    max_n: int = Field(100, ge=1)  # results per request
    max_body_bytes: int = Field(16 * 2**20, ge=1)  # larger requests get 413, counted as the body streams in
    max_url_bytes: int = Field(8192, ge=256)  # longer paths + query strings get 414
    static_dir: Path = STATIC_DIR  # the demo page
    ad_positions: tuple[int, ...] = (3, 8)  # list positions (1 = first) of sponsored items; () for none
    # an ad's click probability must reach this share of the organic median; None: the floor the click model chose
    ad_floor: float | None = Field(None, ge=0)
    ad_reserve: float | None = Field(None, ge=0)  # the least a click costs; None: the reserve the click model chose

    @model_validator(mode="after")
    def _positions_count_from_one(self) -> Settings:
        if any(position < 1 for position in self.ad_positions) or len(set(self.ad_positions)) < len(self.ad_positions):
            raise ValueError(f"ad_positions are distinct list positions from 1, not {self.ad_positions}")
        return self

    def ad_policy(self, chosen_floor: float | None = None, chosen_reserve: float | None = None) -> AdPolicy:
        """The sponsored slots' policy: the configured floor and reserve, else those chosen with the click model,
        else AdPolicy's defaults."""
        floor = self.ad_floor if self.ad_floor is not None else chosen_floor
        reserve = self.ad_reserve if self.ad_reserve is not None else chosen_reserve
        return AdPolicy(tuple(position - 1 for position in self.ad_positions),
                        AdPolicy.floor if floor is None else floor, AdPolicy.reserve if reserve is None else reserve)

    @model_validator(mode="after")
    def _read_key_needs_a_write_key(self) -> Settings:
        if self.read_key is not None and self.api_key is None:
            raise ValueError("a read key without a write key would leave every write open: set COLDREC_API_KEY too")
        return self

    @classmethod
    def from_env(cls, key_files: dict[str, Path | None] | None = None, **values) -> Settings:
        """Settings from keyword values (None: not given); each secret from its file in `key_files`
        (setting -> path), else from its environment variable (COLDREC_ID_KEY, COLDREC_API_KEY, COLDREC_READ_KEY)."""
        given = {name: value for name, value in values.items() if value is not None}
        for field, path in (key_files or {}).items():
            if path is not None:
                given[field] = read_secret(Path(path))
        for field, variable in SECRET_VARIABLES.items():
            if field not in given and os.environ.get(variable):
                given[field] = os.environ[variable]
        if "id_key_file" not in given and os.environ.get("COLDREC_ID_KEY_FILE"):
            given["id_key_file"] = Path(os.environ["COLDREC_ID_KEY_FILE"])
        return cls(**given)

    @property
    def database_path(self) -> Path:
        return self.state_dir / DATABASE_FILE


def read_secret(path: Path) -> str:
    """A key file's content, stripped; an empty or unreadable file is an error naming it."""
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise ValueError(f"cannot read the key file {path}: {error.strerror}") from None
    if not text:
        raise ValueError(f"the key file {path} is empty")
    return text
