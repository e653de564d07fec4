"""Figures for bad input: every bad configuration of tests/unit/bad_configs.py, run as a user runs
baker (a new process), with its exit code, wall time and peak memory; then a mutation sweep (every
key of the shipped files set to a dozen wrong values, in process). Run: python bench/bench_faults.py

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


#: what each key of the shipped files is replaced with in the mutation sweep
MUTATIONS: list[object] = [
    ["a"],
    {"k": "v"},
    "x",
    7,
    None,
    True,
    "y" * 5000,
    -1,
    1.5,
    "",
    {"env": 1},
    '"}${x}%{y}\n',
]


def _key_paths(data: object, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += [(*prefix, k), *_key_paths(v, (*prefix, k))]
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += [(*prefix, i), *_key_paths(v, (*prefix, i))]
    return out


def mutation_sweep() -> dict[str, object]:
    """Every key of baker.yml, defaults.yml and dev.yml replaced by each of MUTATIONS, in process:
    `config show` must exit 0 (still valid) or 2 with a message naming a file, never 1."""
    import contextlib
    import io

    import yaml

    from baker.cli import main as baker

    codes: dict[int, int] = {}
    bugs: list[str] = []
    slowest = 0.0
    for name in ("baker.yml", "environments/defaults.yml", "environments/dev.yml"):
        original = yaml.safe_load((REPO / name).read_text())
        for path in _key_paths(original):
            for value in MUTATIONS:
                with tempfile.TemporaryDirectory(prefix="baker-bench-mutation-") as tmp:
                    root = Path(tmp)
                    shutil.copy(REPO / "baker.yml", root / "baker.yml")
                    shutil.copytree(REPO / "environments", root / "environments")
                    data = yaml.safe_load((REPO / name).read_text())
                    target = data
                    for part in path[:-1]:
                        target = target[part]
                    target[path[-1]] = value
                    (root / name).write_text(yaml.safe_dump(data))
                    out, err = io.StringIO(), io.StringIO()
                    started = time.monotonic()
                    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                        code = baker(["--project", str(root), "config", "show", "-e", "dev"])
                    slowest = max(slowest, time.monotonic() - started)
                    codes[code] = codes.get(code, 0) + 1
                    text = err.getvalue()
                    if code not in (0, 2) or (code == 2 and ".yml" not in text) or "instance of" in text:
                        bugs.append(f"{name} {path} = {value!r:.30}: exit {code}: {text.strip()[:120]}")
    return {"tried": sum(codes.values()), "exit_codes": codes, "bugs": bugs, "slowest": round(slowest, 3)}


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
    sweep = mutation_sweep()
    if args.json:
        print(json.dumps({"summary": summary, "cases": rows, "mutations": sweep}, indent=1, default=str))
        return 0 if len(refused) == len(rows) and not sweep["bugs"] else 1
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
    print(
        f"mutation sweep: every key of baker.yml, defaults.yml, dev.yml set to {len(MUTATIONS)} wrong "
        "values: "
        f"{sweep['tried']} tried, exit codes {sweep['exit_codes']}, {len(sweep['bugs'])} bugs (exit 1 or a "
        f"message naming no file); slowest {sweep['slowest']} s in process"
    )
    for bug in sweep["bugs"]:
        print("  " + str(bug))
    return 0 if len(refused) == len(rows) and within_memory and not sweep["bugs"] else 1


if __name__ == "__main__":
    sys.exit(main())
