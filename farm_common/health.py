"""GET /health: the one endpoint both services answer without a token (auth.OPEN_PATHS)."""

from __future__ import annotations

from fastapi import APIRouter

from farm_common.protocol import Health

router = APIRouter()


@router.get("/health", response_model=Health)
async def health() -> Health:
    return Health()
