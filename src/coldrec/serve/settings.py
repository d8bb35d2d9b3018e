"""Service settings: command-line values first, then the environment, then defaults."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

STATIC_DIR = Path(__file__).resolve().parent / "static"
DATABASE_FILE = "coldrec.sqlite"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Path("coldrec-state")  # SQLite database and id.key
    id_key: SecretStr | None = None  # pseudonymisation key; env COLDREC_ID_KEY; else state_dir/id.key
    api_key: SecretStr | None = None  # required in X-API-Key when set; env COLDREC_API_KEY; off by default
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch: int = Field(1000, ge=1)  # events or items per POST
    max_n: int = Field(100, ge=1)  # results per request
    max_body_bytes: int = Field(16 * 2**20, ge=1)  # larger requests get 413 before parsing
    static_dir: Path = STATIC_DIR  # the demo page

    @classmethod
    def from_env(cls, **values) -> Settings:
        """Settings from keyword values (None: not given), falling back to COLDREC_ID_KEY / COLDREC_API_KEY."""
        given = {name: value for name, value in values.items() if value is not None}
        for field, variable in (("id_key", "COLDREC_ID_KEY"), ("api_key", "COLDREC_API_KEY")):
            if field not in given and os.environ.get(variable):
                given[field] = os.environ[variable]
        return cls(**given)

    @property
    def database_path(self) -> Path:
        return self.state_dir / DATABASE_FILE
