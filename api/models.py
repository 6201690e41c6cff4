"""Request and response model conventions and field types shared by the routers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A request body: types are not coerced (``"2"`` is not a number) and unknown fields are
    refused, so a typo such as ``"pinn"`` is a VALIDATION_ERROR instead of being ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")


Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
"""An identifier chosen by people (SKU, agent, pool, grade): letters, digits, ., _ and -."""
Name = Annotated[str, Field(min_length=1, max_length=200)]
Money = Annotated[int, Field(ge=0, le=10**15, description="integer minor units")]
"""An amount of money: integer minor units (never a float), bounded far above any real sum."""
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")]
