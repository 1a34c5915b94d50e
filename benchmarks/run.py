"""Every performance target of the worker, measured side by side in one run, printed as one table of ratios.

    python benchmarks/run.py                      # all cases (about 10 minutes on 2 cores)
    python benchmarks/run.py --upstream 'python3 /path/to/statsbot_worker.py --token {token} --ws-url {ws_url}'
    python benchmarks/run.py --smoke              # tiny tables, one round: checks the suite still runs (CI)
    python benchmarks/run.py --only train,small   # a subset of the case modules
    python benchmarks/run.py --only dask          # training on --dask-local 2 against here (needs [dask])

``--upstream CMD`` adds today's worker as the reference for the small-job cases: CMD starts it, with
``{python} {token} {ws_url} {data} {home}`` filled in (it runs with its own ``HOME``, so its model store is
a fresh ``~/.statsbot/models``). The suite never downloads it. Without it those rows compare with the
bare echo floor only.

Each case module (``cases_*.py``) has ``async def run(root, rounds, smoke, upstream) -> list[Row]``.
Ratios are medians of alternating rounds; a row's target is the bound the issue set for it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import NOTES, Row

CASES = ("train", "small", "loop", "dask")
#: What a run without ``--only`` measures; the Dask case (``--only dask``) needs the ``[dask]`` extra and minutes.
DEFAULT_CASES = ("train", "small", "loop")


def machine() -> str:
    """A one-line description of this machine for the table's caption."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    ram = ""
    try:
        ram = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    except (AttributeError, OSError, ValueError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){ram}, Python {platform.python_version()}, {platform.system()}"


def table(rows: list[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| case | ours | reference | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        ref = f"{r.reference} ({r.reference_name})" if r.reference_name else r.reference
        lines.append(f"| {r.case} | {r.ours} | {ref} | {ratio} | {r.target} | {met} |")
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", metavar="CMD", help="command that starts today's worker (see above)")
    parser.add_argument("--smoke", action="store_true", help="tiny tables, one round: check the suite runs")
    parser.add_argument("--rounds", type=int, default=None, help="measured rounds per case (default 5)")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_CASES),
        help=f"comma-separated case modules ({', '.join(CASES)}; default {', '.join(DEFAULT_CASES)})",
    )
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.smoke else 5)
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="statsbot-bench-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for name in chosen:
            module = importlib.import_module(f"cases_{name}")
            print(f"[{time.monotonic() - started:5.0f} s] {name} ...", file=sys.stderr, flush=True)
            rows.extend(await module.run(root, rounds, args.smoke, args.upstream))
    print(f"\nMachine: {machine()}; {rounds} round(s); {time.monotonic() - started:.0f} s.\n")
    print(table(rows))
    if NOTES:
        print("\nWhere the time goes (medians, as the server saw it):\n")
        print("\n".join(f"- {line}" for line in NOTES))
    missed = [r.case for r in rows if r.met is False]
    if missed and not args.smoke:
        print(f"\n{len(missed)} target(s) not met.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
