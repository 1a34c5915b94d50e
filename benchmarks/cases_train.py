"""Training through the worker against the plain script doing the same work, two trainings at once against
one after the other, and the peak memory of a training against the plain script's.

Ours is timed from the server queueing the ``train`` job to holding its result (the bot's view); the
plain script (:mod:`plain_train`) from reading the table to the pickled model, imports excluded — the
time a data scientist sees in their own notebook.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from harness import (
    NOTES,
    OURS,
    Peer,
    Row,
    alternate,
    make_table,
    median,
    ratio_row,
    seconds,
    stage_profile,
    train_params,
)

PLAIN = Path(__file__).with_name("plain_train.py")
#: The progress message that starts each stage of a ``train`` job (ml/train.py), and its label.
STAGES = {
    "Checking": "start-up (dispatch to the handler)",
    "Reading": "reading",
    "Read ": "checking the target",
    "Preparing": "preprocessing",
    "Fitting": "fitting",
    "Evaluating": "scoring",
    "Measuring": "importances and artefacts",
    "Saving": "saving",
    "Saved": "sending the result",
}


async def plain(table: Path, model_type: str, n_estimators: int = 10, n_jobs: int = -1) -> dict[str, float]:
    """One run of the plain script: its seconds and peak memory."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PLAIN),
        str(table),
        model_type,
        str(n_estimators),
        str(n_jobs),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"plain_train.py failed ({proc.returncode})")
    return json.loads(out.decode().strip().splitlines()[-1])


def job_peaks_mb(peer: Peer) -> list[float]:
    """Peak memory of each train job process, from the worker's log (``... peak memory N MB``)."""
    log = peer.home / ".statsbot" / "logs" / "worker.log"
    if not log.exists():
        return []
    text = log.read_text(errors="replace")
    return [float(m) for m in re.findall(r"handlers\.train:train\) peak memory (\d+) MB", text)]


async def run(root: Path, rounds: int, smoke: bool, upstream: str | None) -> list[Row]:
    """The training rows of the table."""
    data = root / "data"
    data.mkdir(exist_ok=True)
    rows_n = 5_000 if smoke else 200_000
    table = make_table(data / f"train_{rows_n}.csv", rows_n)
    forest = {"n_estimators": 10, "n_jobs": -1}
    rows: list[Row] = []
    plain_peaks: list[float] = []
    async with Peer("ours-train", OURS, root, data) as peer:
        logistic_marks: list[list[tuple[float, str]]] = []

        async def ours_logistic() -> float:
            logistic_marks.append([])
            return (await peer.job("train", train_params(table, "logistic"), marks=logistic_marks[-1]))[0]

        async def plain_logistic() -> float:
            out = await plain(table, "logistic")
            plain_peaks.append(out["peak_mb"])
            return out["seconds"]

        s = await alternate(rounds, {"ours": ours_logistic, "plain": plain_logistic})
        NOTES.append(
            f"train logistic {rows_n:,} rows, ours: "
            + stage_profile(logistic_marks[1:] or logistic_marks, STAGES)
            + f"; the plain script: {seconds(median(s['plain']))} in all"
        )
        rows.append(
            ratio_row(f"train logistic, {rows_n:,} x 20, vs plain script", s["ours"], s["plain"], "plain script", 1.05)
        )
        peaks = job_peaks_mb(peer)
        if peaks and plain_peaks:
            ratio = median(peaks) / median(plain_peaks)
            rows.append(
                Row(
                    "peak memory of a logistic training, vs plain script",
                    f"{median(peaks):.0f} MB",
                    f"{median(plain_peaks):.0f} MB",
                    ratio,
                    "≤ 1.3x",
                    "plain script",
                    ratio <= 1.3,
                )
            )

        async def ours_forest() -> float:
            return (await peer.job("train", train_params(table, "random_forest", **forest)))[0]

        async def plain_forest() -> float:
            return (await plain(table, "random_forest", 10, -1))["seconds"]

        s = await alternate(max(1, rounds - 1), {"ours": ours_forest, "plain": plain_forest})
        rows.append(
            ratio_row(
                f"train random forest (10 trees, n_jobs=-1), {rows_n:,} x 20, vs plain script",
                s["ours"],
                s["plain"],
                "plain script",
                1.05,
            )
        )

        both = [("train", train_params(table, "logistic")), ("train", train_params(table, "logistic"))]

        async def at_once() -> float:
            return await peer.jobs_at_once(both)

        async def one_after_other() -> float:
            total = 0.0
            for action, params in both:
                total += (await peer.job(action, params))[0]
            return total

        s = await alternate(rounds, {"at once": at_once, "sequential": one_after_other})
        rows.append(
            ratio_row(
                "two logistic trainings at once, vs one after the other",
                s["at once"],
                s["sequential"],
                "sequential",
                0.65,
            )
        )
    for row in rows:
        if row.ours == "-":
            row.ours = seconds(float("nan"))
    return rows
