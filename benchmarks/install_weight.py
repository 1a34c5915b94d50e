"""Install weight: the size on disk and the wall time of each install, in fresh venvs (not run by CI).

    python3 benchmarks/install_weight.py                       # every scenario (about 20 minutes)
    python3 benchmarks/install_weight.py --only base,dev       # a subset (names: --list)
    python3 benchmarks/install_weight.py --keep /tmp/weights   # keep the venvs and pip logs there

Each scenario gets its own ``python -m venv`` in a temporary folder, its own empty pip cache (so every
byte is downloaded, as on a fresh machine) and a copy of this project (so nothing is written into the
checkout), then runs the install a user would type: ``pip install -e '<project>[extras]' packages...``.
It prints one Markdown table: installed size (``du -sk`` of the whole venv, pip itself included),
downloaded size (the sum of the sizes pip prints on its ``Downloading ...`` lines: every file fetched),
wall time of the ``pip install`` (download included, so it depends on the network), and the difference
from the base install. Scenarios run one after another, never in parallel, so they do not share the
network or the cores.

pip runs without this machine's pip configuration and ``PIP_*`` variables (local wheel folders, extra
indexes and constraints would make it download less than a fresh machine does) unless
``--machine-pip-config`` is given. Everything comes from PyPI, except ``keras-torch-cpu``, which needs
PyTorch's own CPU index (download.pytorch.org: PyPI's Linux ``torch`` wheel pulls the CUDA libraries).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
#: Copied into each scenario's folder: what ``pip install -e`` needs to build the project.
PROJECT_FILES = ("pyproject.toml", "README.md", "statsbot_nb")


@dataclass(frozen=True)
class Scenario:
    """One install: the project's ``extras`` (editable, as README does) plus further ``packages``."""

    name: str
    what: str
    extras: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def pip_args(self, project: Path) -> list[str]:
        target = f"{project}[{','.join(self.extras)}]" if self.extras else str(project)
        return [*self.options, "-e", target, *self.packages]


SCENARIOS = (
    Scenario("base", "the worker alone: `pip install -e .`"),
    Scenario("dev", "README's first command: the demo and the test suite", ("dev",)),
    Scenario("boost", "base + [boost] (xgboost, lightgbm, catboost)", ("boost",)),
    Scenario("xgboost", "base + xgboost (the CPU-only build on Linux)", packages=("xgboost-cpu",)),
    Scenario("lightgbm", "base + lightgbm", packages=("lightgbm",)),
    Scenario("catboost", "base + catboost", packages=("catboost",)),
    Scenario("keras", "base + [keras] (Keras 3 and the backend the worker picks)", ("keras",)),
    Scenario("keras-jax", "base + Keras 3 on JAX (CPU)", packages=("keras", "jax[cpu]")),
    Scenario("keras-tf", "base + Keras 3 on TensorFlow (CPU build)", packages=("keras", "tensorflow-cpu")),
    Scenario("keras-torch", "base + Keras 3 on PyTorch from PyPI (with CUDA)", packages=("keras", "torch")),
    Scenario(
        "keras-torch-cpu",
        "base + Keras 3 on PyTorch's CPU build (its own index)",
        packages=("keras", "torch"),
        options=("--extra-index-url", "https://download.pytorch.org/whl/cpu"),
    ),
    Scenario("browser", "base + [browser] (JupyterLab, Playwright: the browser test)", ("browser",)),
    Scenario("all", "every extra, as CI installs it", ("dev", "boost", "keras", "browser")),
    Scenario(
        "before",
        "the old first command: [boost,keras,dev] with Keras on TensorFlow, JupyterLab and Playwright in dev",
        ("dev", "boost", "browser"),
        ("keras", "tensorflow-cpu"),
    ),
)


def kib(path: Path) -> int:
    """Disk usage of ``path`` in KiB, as ``du -sk`` counts it (hard links once, blocks not bytes)."""
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


#: pip's progress line for each file it fetches: ``Downloading jaxlib-0.4.30-...whl (79.6 MB)``
DOWNLOADING = re.compile(r"Downloading \S+ \(([\d.]+) (bytes|kB|MB|GB)\)")
UNITS = {"bytes": 1 / 1024, "kB": 1000 / 1024, "MB": 1000**2 / 1024, "GB": 1000**3 / 1024}


def downloaded_kib(log: str) -> int:
    """KiB pip fetched, from its ``Downloading`` lines (pip prints decimal units, rounded to 3 digits)."""
    return round(sum(float(n) * UNITS[unit] for n, unit in DOWNLOADING.findall(log)))


def mb(kilobytes: int) -> str:
    return f"{kilobytes / 1024:,.0f} MB"


@dataclass(frozen=True)
class Result:
    """What one install cost: sizes in KiB, wall time in seconds, pip's exit code."""

    size: int
    download: int
    seconds: float
    code: int


def run(scenario: Scenario, root: Path, python: str, machine_config: bool) -> Result:
    """Create the scenario's venv and install into it."""
    folder = root / scenario.name
    if folder.exists():
        shutil.rmtree(folder)
    project = folder / "project"
    project.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, project / name)
    venv, cache = folder / "venv", folder / "pip-cache"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    if not machine_config:  # no local wheel folders, indexes or constraints: PyPI only, as on a fresh machine
        env["PIP_CONFIG_FILE"] = os.devnull
    env.update(PIP_CACHE_DIR=str(cache), PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", *scenario.pip_args(project)]
    log = folder / "pip.log"
    started = time.monotonic()
    with log.open("w") as out:
        code = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=folder).returncode
    elapsed = time.monotonic() - started
    if code != 0:
        print(f"{scenario.name}: pip failed ({code}); see {log}:\n{log.read_text()[-2000:]}", file=sys.stderr)
    return Result(kib(venv), downloaded_kib(log.read_text()), elapsed, code)


def table(results: dict[str, Result]) -> str:
    """The measurements as a Markdown table (differences from ``base`` when it was measured)."""
    base = results.get("base")
    lines = [
        "| install | what | venv size | downloaded | pip install time | over base (size) |",
        "|---|---|---|---|---|---|",
    ]
    by_name = {s.name: s for s in SCENARIOS}
    for name, r in results.items():
        extra = "-" if base is None or name == "base" else f"+{mb(r.size - base.size)}"
        failed = "" if r.code == 0 else f" (**pip failed: {r.code}**)"
        lines.append(
            f"| {name} | {by_name[name].what}{failed} | {mb(r.size)} | {mb(r.download)} | {r.seconds:.0f} s | {extra} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venvs (default: this one)")
    parser.add_argument(
        "--machine-pip-config",
        action="store_true",
        help="use this machine's pip configuration and PIP_* variables (default: none, PyPI only)",
    )
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:12} pip install {' '.join(s.pip_args(Path('.')))}   # {s.what}")
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or [s.name for s in SCENARIOS]
    unknown = sorted(set(names) - {s.name for s in SCENARIOS})
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; see --list")
    chosen = [s for s in SCENARIOS if s.name in names]
    version = subprocess.run([args.python, "--version"], capture_output=True, text=True).stdout.strip()
    results: dict[str, Result] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="statsbot-install-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for scenario in chosen:
            print(f"[{time.monotonic() - started:5.0f} s] {scenario.name} ...", file=sys.stderr, flush=True)
            results[scenario.name] = run(scenario, root, args.python, args.machine_pip_config)
            r = results[scenario.name]
            print(f"        {mb(r.size)}, {mb(r.download)} downloaded, {r.seconds:.0f} s", file=sys.stderr, flush=True)
    print(f"\n{version} venvs on {platform.system()} {platform.machine()}; {os.cpu_count()} cores; ", end="")
    print(f"{time.monotonic() - started:.0f} s in all. Times include downloading from PyPI.\n")
    print(table(results))
    return 0 if all(r.code == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
