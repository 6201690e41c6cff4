"""Request and response model conventions shared by the routers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A request body: types are not coerced (``"2"`` is not a number) and unknown fields are
    refused, so a typo such as ``"pinn"`` is a VALIDATION_ERROR instead of being ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")
