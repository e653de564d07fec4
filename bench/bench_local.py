"""Local cloud figures: `baker local up` cold, cached and warm, and the emulator's memory.

Prints:
- cold up: nothing cached, the build host's root filesystem built by mmdebstrap (skipped with
  --no-cold, which needs apt sources reachable from this network namespace);
- cached up: root filesystem in the cache, nothing running (the usual first `up` of a day);
- warm up: the cloud already runs (`up` twice is harmless and should be near free);
- down: stop everything, unmount, remove the namespace;
- the emulator's resident memory when idle.

Each figure is the whole command as a user runs it (`python -m baker local up`, interpreter
start included). Run as root: ``python bench/bench_local.py``. It uses its own namespace name,
state dir and (for the cold run) cache dir, and runs `baker local down` on them at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def baker(*args: str, env: dict[str, str]) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "baker", "--output", "json", "local", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"baker local {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
    return took, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cold", action="store_true", help="skip the cold run (no rootfs build)")
    parser.add_argument("--repeat", type=int, default=3, help="cached and warm runs to take the median of")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the local cloud makes a network namespace")

    work = Path(tempfile.mkdtemp(prefix="baker-bench-local-"))
    name = f"baker-bench-{os.getpid()}"
    env = {**os.environ, "BAKER_LOCAL_DIR": str(work / "state")}
    common = ["--state-dir", str(work / "state")]
    figures: dict[str, str] = {}
    try:
        if not args.no_cold:
            cold_env = {**env, "BAKER_CACHE_DIR": str(work / "cache")}
            took, _ = baker("up", *common, "--netns", name, env=cold_env)
            figures["cold up (rootfs built)"] = f"{took:.1f} s"
            baker("down", *common, env=cold_env)

        cached, warm, downs = [], [], []
        rss = []
        for _ in range(args.repeat):
            took, _ = baker("up", *common, "--netns", name, env=env)
            cached.append(took)
            took, _ = baker("up", *common, "--netns", name, env=env)
            warm.append(took)
            time.sleep(2)  # idle: the emulator's first requests are behind it
            _, status = baker("status", *common, env=env)
            rss.append(status["emulator_rss_mib"])
            took, _ = baker("down", *common, env=env)
            downs.append(took)
        figures["cached up (rootfs cached)"] = f"{statistics.median(cached):.2f} s median of {len(cached)}"
        figures["warm up (already running)"] = f"{statistics.median(warm):.2f} s median of {len(warm)}"
        figures["down"] = f"{statistics.median(downs):.2f} s median of {len(downs)}"
        figures["emulator RSS, idle"] = f"{max(rss):.0f} MiB"
    finally:
        subprocess.run(
            [sys.executable, "-m", "baker", "local", "down", *common],
            cwd=REPO,
            env=env,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(work, ignore_errors=True)

    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
