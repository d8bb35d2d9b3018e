"""What onboarding collects about a shopper before any behaviour."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class UserProfile(BaseModel):
    """Stated interests (free text or category names) and locale."""

    user_id: str = Field(min_length=1)
    interests: list[str] = Field(default_factory=list)
    locale: str | None = None

    @field_validator("interests")
    @classmethod
    def _strip_empty(cls, values: list[str]) -> list[str]:
        return [v.strip() for v in values if v and v.strip()]
