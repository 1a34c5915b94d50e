"""A job the loop benchmark adds to the worker's actions: a flood of progress messages (run in a job process,
imported there by name like every handler)."""

from __future__ import annotations

from typing import Any

from statsbot_nb.context import JobContext


def flood(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Report progress ``count`` times as fast as the pipe takes it.

    The job context drops reports closer together than its interval unless the stage changes, so this
    alternates two stages: every report reaches the worker (a worst case for its per-message handling).
    """
    count = int(params.get("count", 5000))
    for i in range(count):
        ctx.progress(100.0 * (i + 1) / count, f"batch {i + 1}/{count}", ("fitting", "scoring")[i % 2])
    return {"count": count}
