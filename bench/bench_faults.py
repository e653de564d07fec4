"""Figures for bad input: every bad configuration of tests/unit/bad_configs.py, run as a user runs
baker (a new process), with its exit code, wall time and peak memory. Run: python bench/bench_faults.py

A case counts as refused when baker exits 2 within 2 s and 200 MB, prints one JSON error object
naming what the case expects (file, key path), and no secret, class name or traceback appears.
As root each run is in a fresh network namespace without interfaces (unshare --net): a bad input
that got as far as AWS would fail there instead of reaching the network.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.unit.bad_configs import CASES, NEVER, SECRET, Case, make_project  # noqa: E402

TIME_LIMIT = 2.0
MEMORY_LIMIT_MB = 200


def run_case(case: Case, root: Path) -> dict[str, object]:
    project = root / "project"
    project.mkdir()
    make_project(project, case)
    argv = [sys.executable, "-m", "baker", "--project", str(project), "--output", "json", *case.args]
    if os.geteuid() == 0 and shutil.which("unshare"):
        argv = ["unshare", "--net", *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO), "X_PASS": SECRET, **case.env}
    with (root / "out").open("w+b") as out_file, (root / "err").open("w+b") as err_file:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out_file, stderr=err_file, env=env)
        # wait4, not wait: the child's own peak memory (ru_maxrss, KiB)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    text = out.decode(errors="replace") + err.decode(errors="replace")
    try:
        message = str(json.loads(out.decode().splitlines()[-1]).get("error", ""))
    except (ValueError, IndexError):
        message = ""
    peak_mb = usage.ru_maxrss / 1024
    ok = (
        code == 2
        and seconds <= TIME_LIMIT
        and all(e in message for e in case.expect)
        and not any(n in text for n in (*NEVER, *case.forbid))
    )
    return {
        "case": case.name,
        "exit": code,
        "seconds": seconds,
        "peak_mb": peak_mb,
        "ok": ok,
        "message": message,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = parser.parse_args()
    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory(prefix="baker-bench-faults-") as tmp:
            rows.append(run_case(case, Path(tmp)))
    refused = [r for r in rows if r["ok"]]
    within_memory = all(float(r["peak_mb"]) <= MEMORY_LIMIT_MB for r in rows)
    summary = {
        "tried": len(rows),
        "refused": len(refused),
        "max_seconds": round(max(float(r["seconds"]) for r in rows), 3),
        "max_peak_mb": round(max(float(r["peak_mb"]) for r in rows), 1),
        "within_memory": within_memory,
    }
    if args.json:
        print(json.dumps({"summary": summary, "cases": rows}, indent=1, default=str))
        return 0 if len(refused) == len(rows) else 1
    print(f"{'bad input':<48} {'exit':>4} {'seconds':>8} {'peak MB':>8}  refused")
    for r in rows:
        print(
            f"{r['case']:<48} {r['exit']:>4} {float(r['seconds']):>8.3f} {float(r['peak_mb']):>8.1f}  "
            f"{'yes' if r['ok'] else 'NO: ' + str(r['message'])[:80]}"
        )
    print(
        f"\nrefused {summary['refused']} of {summary['tried']} bad inputs tried (exit 2, one message naming "
        f"file and key, no secret); slowest {summary['max_seconds']} s (limit {TIME_LIMIT} s), "
        f"largest {summary['max_peak_mb']} MB (limit {MEMORY_LIMIT_MB} MB)"
    )
    return 0 if len(refused) == len(rows) and within_memory else 1


if __name__ == "__main__":
    sys.exit(main())
