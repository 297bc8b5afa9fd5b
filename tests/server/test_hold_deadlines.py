"""The shared deadline heap of held polls (``push._Deadlines``): one timer for all, stale entries dropped."""

from __future__ import annotations

import asyncio

from rendezvous.push import _Deadlines, _Hold


async def _sleeper() -> None:
    await asyncio.sleep(60)


async def test_holds_are_woken_at_their_deadlines_in_order_on_one_timer() -> None:
    deadlines = _Deadlines()
    tasks = [asyncio.create_task(_sleeper()) for _ in range(3)]
    holds = [_Hold(task) for task in tasks]
    for hold, timeout in zip(holds, (0.15, 0.05, 10.0), strict=True):
        deadlines.add(hold, timeout)
    await asyncio.sleep(0.1)
    assert [task.cancelling() for task in tasks] == [0, 1, 0]
    await asyncio.sleep(0.1)
    assert [task.cancelling() for task in tasks] == [1, 1, 0]
    assert len(deadlines) == 1
    deadlines.wake_all()
    deadlines.wake_all()  # every hold is woken once, however often
    assert [task.cancelling() for task in tasks] == [1, 1, 1]
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_holds_that_end_early_are_dropped_from_the_heap_once_they_are_most_of_it() -> None:
    deadlines = _Deadlines()
    task = asyncio.create_task(_sleeper())
    holds = [_Hold(task) for _ in range(3000)]
    for hold in holds:
        deadlines.add(hold, 30.0)
    for hold in holds[:2000]:
        hold.task = None
        deadlines.ended(hold)
    assert len(deadlines) < 1500
    assert not task.cancelling()
    for hold in holds[2000:]:
        hold.task = None
        deadlines.ended(hold)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
