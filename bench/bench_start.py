"""How fast baker answers, each command as a whole process: what an operator or a CI step waits for.

Prints min / median / max wall seconds over --runs runs of:
- ``python -c pass`` (the interpreter alone: the floor);
- ``baker --help``, ``baker --version`` and one TAB of the shell completion (``baker deploy -e <TAB>``);
- a cache-hit ``baker --local bake -e dev`` against a local cloud of its own (the recipe baked once
  first, with Packer), in a private loopback-only network namespace, like the other benches: as CI
  meets it (answered from the last bake's receipt, baker/receipt.py) and with the configuration
  loaded and validated (the receipt removed before each run: what a hit cost before receipts);
and the ten imports with the largest cumulative time (``python -X importtime``) of ``--help`` and of
the cache-hit bake.

Run as root: ``python bench/bench_start.py``. The baker measured is the tree this file is in (its
PYTHONPATH is set for every child), so a copy of this file in an older checkout measures that one.
Its modules are measured as an installed baker runs them, from bytecode: the children write and
read it in a temp dir (PYTHONPYCACHEPREFIX) filled by a first, unmeasured run, even where
PYTHONDONTWRITEBYTECODE is set; ``--source`` measures them compiled from source on every start.
The build host's root filesystem must be cached already (``baker local up`` builds it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILD_ENV = {**os.environ, "PYTHONPATH": str(REPO)}
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def cpu() -> float:
    """CPU seconds (user + system) of the children that ended so far: less disturbed by a busy
    machine than the wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wall(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path = REPO) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    used, started = cpu(), time.perf_counter()
    subprocess.run(argv, env=env or CHILD_ENV, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started, cpu() - used


def spread(runs: list[tuple[float, float]]) -> str:
    times = [w for w, _ in runs]
    return (
        f"{min(times):5.2f} {statistics.median(times):6.2f} {max(times):5.2f}"
        f"   CPU {statistics.median(c for _, c in runs):5.2f}"
    )


def top_imports(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path = REPO) -> list[str]:
    """The ten imports with the largest cumulative time, as ``-X importtime`` reports them."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv[1:]],
        env=env or CHILD_ENV,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    found = []
    for line in proc.stderr.splitlines():
        if m := IMPORT_LINE.match(line):
            found.append((int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
    found.sort(reverse=True)
    return [f"{us / 1e6:6.3f} s  {'  ' * depth}{name}" for us, depth, name in found[:10]]


def baker(*args: str) -> list[str]:
    return [sys.executable, "-m", "baker", *args]


def completion_env(words: str) -> dict[str, str]:
    return {
        **CHILD_ENV,
        "_BAKER_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }


def git_project(root: Path) -> None:
    """The project copy in a git repository of its own, so its version stays put between bakes."""
    shutil.copytree(
        REPO / "examples/hello-web", root / "examples/hello-web", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / ".gitignore").write_text(".baker/\n")
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for args in (
        ["init", "-q", "-b", "main"],
        [*ident, "add", "-A"],
        [*ident, "commit", "-q", "-m", "bench"],
    ):
        subprocess.run(["git", "-C", str(root), *args], check=True)


def profile(argv: Sequence[str], env: dict[str, str], cwd: Path, top: int = 30) -> list[str]:
    """The ``top`` functions by cumulative time of one run under cProfile (what is left to cut)."""
    import pstats

    with tempfile.NamedTemporaryFile(suffix=".prof") as out:
        subprocess.run(
            [sys.executable, "-m", "cProfile", "-o", out.name, *argv[1:]],
            env=env,
            cwd=cwd,
            capture_output=True,
            check=True,
        )
        stats = pstats.Stats(out.name)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)  # type: ignore[attr-defined]
    lines = []
    for (file, line, name), (_, calls, _, cumulative, _) in rows[:top]:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
        lines.append(f"{cumulative:6.3f} s {calls:6d}x  {name}  {where}")
    return lines


def cache_hit(
    runs: int, with_profile: bool = False
) -> tuple[list[tuple[float, float]], list[tuple[float, float]], list[str], float, list[str]]:
    """(wall and CPU seconds of each cache-hit bake, the same without a receipt, its top imports,
    seconds of the first bake, its profile)."""
    sys.path.insert(0, str(REPO / "bench"))
    from privatecloud import private_cloud

    with private_cloud("start", parts=("environments", "packer", "ansible")) as (_, root):
        git_project(root)
        env = {**CHILD_ENV, "BAKER_LOCAL_DIR": os.environ["BAKER_LOCAL_DIR"]}
        argv = baker("--project", str(root), "--local", "--output", "json", "bake", "-e", "dev")
        started = time.perf_counter()
        first = subprocess.run(argv, env=env, cwd=root, capture_output=True, text=True)
        baked = time.perf_counter() - started
        if first.returncode != 0:
            raise SystemExit(f"the first bake failed:\n{first.stderr[-3000:]}")
        subprocess.run(argv, env=env, cwd=root, capture_output=True, check=True)  # unmeasured
        receipt = root / ".baker/receipts/dev.json"
        assert receipt.is_file(), "the bake kept no receipt"

        def hits(*, configured: bool) -> list[tuple[float, float]]:
            times = []
            for _ in range(runs):
                if configured:
                    receipt.unlink()
                used, started = cpu(), time.perf_counter()
                proc = subprocess.run(argv, env=env, cwd=root, capture_output=True, text=True, check=True)
                out = proc.stdout
                times.append((time.perf_counter() - started, cpu() - used))
                assert json.loads(out.splitlines()[-1])["cached"] is True, out
            return times

        loaded = hits(configured=True)
        times = hits(configured=False)
        profiled = profile(argv, env, root) if with_profile else []
        return times, loaded, top_imports(argv, env=env, cwd=root), baked, profiled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each (default 7)")
    parser.add_argument("--no-bake", action="store_true", help="skip the cache-hit bake (needs no root)")
    parser.add_argument(
        "--profile", action="store_true", help="also the cache-hit bake's top functions (cProfile)"
    )
    parser.add_argument(
        "--source", action="store_true", help="keep PYTHONDONTWRITEBYTECODE: compile baker on every start"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="baker-bench-pyc-") as pyc:
        if not args.source:
            CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
            CHILD_ENV["PYTHONPYCACHEPREFIX"] = pyc
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    if not args.no_bake and os.geteuid() != 0:
        print(
            "bench_start needs root for the cache-hit bake (network namespace); or --no-bake", file=sys.stderr
        )
        return 2
    rows = [
        ("python -c pass", [sys.executable, "-c", "pass"], CHILD_ENV),
        ("baker --help", baker("--help"), CHILD_ENV),
        ("baker --version", baker("--version"), CHILD_ENV),
        ("TAB: baker deploy -e <TAB>", baker(), completion_env("baker deploy -e ")),
    ]
    how = "compiled from source on every start" if args.source else "from bytecode"
    print(f"whole process, wall seconds (and median CPU) over {args.runs} runs; baker from {REPO}, {how}")
    print(f"  {'':34} {'min':>5} {'median':>6} {'max':>5}")
    for label, argv, env in rows:
        wall(argv, env=env)  # warm the page cache
        print(f"  {label:34} {spread([wall(argv, env=env) for _ in range(args.runs)])}", flush=True)
    if not args.no_bake:
        times, loaded, bake_imports, baked, profiled = cache_hit(args.runs, args.profile)
        print(f"  {'cache-hit bake (--local -e dev)':34} {spread(times)}   (first bake {baked:.1f} s)")
        print(f"  {'  the same, configuration loaded':34} {spread(loaded)}   (no receipt)")
    print("\nten largest imports by cumulative time: baker --help")
    print("\n".join(f"  {line}" for line in top_imports(baker("--help"))))
    if not args.no_bake:
        print("\nten largest imports by cumulative time: cache-hit bake")
        print("\n".join(f"  {line}" for line in bake_imports))
        if profiled:
            print("\nthe cache-hit bake's functions by cumulative time (cProfile, one run)")
            print("\n".join(f"  {line}" for line in profiled))
    return 0


if __name__ == "__main__":
    sys.exit(main())
