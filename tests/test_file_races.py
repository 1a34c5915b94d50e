"""A local process swaps allowed files and folders for symlinks to outside ones while a real worker reads and
writes there: nothing outside may ever be read or written (issue 11, item 4).

The worker runs the real handlers behind the reference server over a real socket; a separate process
swaps, as fast as it can, a folder (``data/sub`` <-> a symlink to ``outside``) and a file (``data/swap.csv``
<-> a symlink to ``outside/secret.csv``). Each ``load_data`` (sharing on) and ``save_file`` is either
refused with a sentence or served from inside; an escape is outside content in a result or a new file
outside. The counts are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from pathlib import Path

import pandas as pd

from statsbot_nb.context import JobSettings

SECRET = "SECRET_OUTSIDE"
MIN_TRIES = 300  # per action
TIME_BUDGET = 40.0  # seconds for the jobs (the test stops early once MIN_TRIES is met)


def _swapper(data: str, outside: str, stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    """Swap ``data/sub`` and ``data/swap.csv`` with symlinks to outside, and back, until told to stop."""
    d, o = Path(data), Path(outside)
    sub, aside = d / "sub", d / "sub_real"
    while not stop.is_set():
        with contextlib.suppress(OSError):
            os.rename(sub, aside)
            os.symlink(o, sub)
            os.unlink(sub)
            os.rename(aside, sub)
        with contextlib.suppress(OSError):
            os.symlink(o / "secret.csv", d / "swap.tmp1")
            os.replace(d / "swap.tmp1", d / "swap.csv")
            os.link(d / "keep.csv", d / "swap.tmp2")
            os.replace(d / "swap.tmp2", d / "swap.csv")


def _outside_files(outside: Path) -> set[str]:
    return {str(p.relative_to(outside)) for p in outside.rglob("*")}


async def test_swapping_process_never_makes_the_worker_escape(reference, make_worker, home: Path, tmp_path: Path):
    user = home.parent
    data = user / "data"
    (data / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    inside_table = pd.DataFrame({"v": ["inside"] * 3})
    secret_table = pd.DataFrame({"v": [SECRET] * 3})
    inside_table.to_csv(data / "sub" / "t.csv", index=False)
    inside_table.to_csv(data / "keep.csv", index=False)
    os.link(data / "keep.csv", data / "swap.csv")
    secret_table.to_csv(outside / "t.csv", index=False)
    secret_table.to_csv(outside / "secret.csv", index=False)
    before = _outside_files(outside)

    settings = JobSettings(home=home, cwd=data, share_data=True)
    worker = make_worker(reference.url, reference.issue_token(), settings=settings, actions=None)
    worker.start()
    await worker.wait_connected(timeout=10)

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    swapper = ctx.Process(target=_swapper, args=(str(data), str(outside), stop), daemon=True)
    swapper.start()
    counts = {"load_tries": 0, "load_ok": 0, "load_refused": 0, "read_escapes": 0}
    counts |= {"save_tries": 0, "save_ok": 0, "save_refused": 0, "write_escapes": 0}
    try:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < TIME_BUDGET and min(counts["load_tries"], counts["save_tries"]) < MIN_TRIES:
            i += 1
            target = data / "sub" / "t.csv" if i % 2 else data / "swap.csv"
            loaded = await reference.run_job("load_data", {"file_path": str(target)}, timeout=60)
            counts["load_tries"] += 1
            if loaded.success:
                counts["load_ok"] += 1
                counts["read_escapes"] += SECRET in repr(loaded.data)
            else:
                counts["load_refused"] += 1
            saved = await reference.run_job(
                "save_file",
                {"file_path": str(data / "sub" / f"out_{i}.csv"), "dataframe": [{"a": i}]},
                timeout=60,
            )
            counts["save_tries"] += 1
            counts["save_ok" if saved.success else "save_refused"] += 1
    finally:
        stop.set()
        swapper.join(10)
    elapsed = time.monotonic() - start
    counts["write_escapes"] = len(_outside_files(outside) - before)
    print(f"\nswap race over {elapsed:.1f} s: {counts}")
    assert counts["read_escapes"] == 0 and counts["write_escapes"] == 0, counts
    assert counts["load_tries"] >= 200 and counts["save_tries"] >= 200, counts
    # the race was real: some jobs met a swapped name, and some got through
    assert counts["load_ok"] > 0 and counts["save_ok"] > 0, counts
    assert counts["load_refused"] + counts["save_refused"] > 0, counts
