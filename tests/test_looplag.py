"""bot/server/looplag.py: a loop held by CPU-bound work is seen late, counted and logged."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.server.looplag import LoopLag


async def test_a_blocked_event_loop_is_observed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    lags: list[float] = []
    monitor = LoopLag(lags.append, every=0.02, log_over=0.1)
    monitor.start()
    await asyncio.sleep(0.1)
    assert lags  # observed on every tick
    with caplog.at_level(logging.INFO, logger="lemi.loop"):
        time.sleep(0.3)  # CPU-bound work that never yields
        await asyncio.sleep(0.1)
    await monitor.stop()
    assert max(lags) >= 0.25
    assert any("the event loop ran" in r.getMessage() for r in caplog.records)
