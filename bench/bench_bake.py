"""Figures for bake, measured in a fresh local cloud of its own. Run as root: python bench/bench_bake.py

Prints:
- local bake time, cold (the first bake in a fresh cloud) and warm (--force rebakes of the same
  recipe), each a full `Bake.run()`;
- the whole `baker --local bake` command on a cache hit, as a user runs it (a new process), and the
  AWS calls it makes (counted in-process with a botocore `before-call` hook; target <= 2, < 2 s);
- baker's overhead against the same `packer build` run by hand on the same rendered template and a
  build host session of its own (target <= 5 %).

Everything runs in a private loopback-only network namespace (baker-bench-<pid>) that the script
creates, enters and removes; the local cloud's state lives in a temp dir. The build host's root
filesystem must be cached already (`baker local up` builds it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from baker import aws as aws_module  # noqa: E402
from baker import bake, render  # noqa: E402
from baker.config import load_project  # noqa: E402
from baker.local import cloud, netns  # noqa: E402


def make_project(root: Path) -> Path:
    """A copy of this repository's project in its own git repository (a version that stays put)."""
    shutil.copy(REPO / "baker.yml", root / "baker.yml")
    for name in ("environments", "packer", "ansible"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
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
    return root


@contextlib.contextmanager
def own_cloud(state_dir: Path) -> Iterator[str]:
    name = f"baker-bench-{os.getpid()}"
    netns.create(name)
    netns.enter(name)
    os.environ["BAKER_LOCAL_DIR"] = str(state_dir)
    try:
        cloud.up(state_dir, netns_name=name, rootfs=False)
        yield name
    finally:
        with contextlib.suppress(Exception):
            cloud.down(state_dir)
        netns.delete(name)


@contextlib.contextmanager
def counting_aws_calls() -> Iterator[list[str]]:
    """Every AWS API call made by sessions baker creates, by operation name."""
    calls: list[str] = []
    original = aws_module.AWS.session

    def session(self: aws_module.AWS) -> Any:
        fresh = self._session is None
        s = original(self)
        if fresh:
            s.events.register("before-call", lambda model, **_: calls.append(model.name))
        return s

    aws_module.AWS.session = session  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        aws_module.AWS.session = original  # type: ignore[method-assign]


def one_bake(project_dir: Path, *, force: bool = False) -> tuple[float, dict[str, Any]]:
    project = load_project(project_dir)
    env = project.environment("dev")
    stage = bake.Bake(project, env, cloud.aws(env.settings.aws.region), build_host=cloud.build_host())
    started = time.perf_counter()
    result = stage.run(force=force)
    return time.perf_counter() - started, result


def packer_by_hand(project_dir: Path) -> float:
    """The same `packer build` on the template baker rendered, with a build host session of its own."""
    build = project_dir / ".baker/build/dev"
    variables = build / render.VARIABLES_OUT
    values_text = variables.read_text()
    host = cloud.build_host()
    with host.session(keep=False) as session:
        lines = []
        for line in values_text.splitlines():
            if line.startswith("ssh_port ="):
                line = f"ssh_port = {session.port}"
            elif line.startswith("ssh_private_key_file ="):
                line = f"ssh_private_key_file = {render.hcl(str(session.private_key_file))}"
            elif line.startswith("ami_name ="):
                line = line[:-1] + '-byhand"'
            lines.append(line)
        hand = build / "by-hand.pkrvars.hcl"
        hand.write_text("\n".join(lines) + "\n")
        env = render.packer_base_env()
        env.update(cloud.aws("us-east-1").env_vars())
        argv = [
            "packer",
            "build",
            "-machine-readable",
            "-color=false",
            f"-var-file={hand}",
            str(build / render.TEMPLATE_OUT),
        ]
        started = time.perf_counter()
        subprocess.run(argv, cwd=project_dir, env=env, check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - started
    return elapsed


def cache_hit_command(project_dir: Path) -> float:
    """The whole command as a user runs it: a new process, its interpreter start included."""
    argv = [
        sys.executable,
        "-m",
        "baker",
        "--project",
        str(project_dir),
        "--local",
        "--output",
        "json",
        "bake",
        "-e",
        "dev",
    ]
    started = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=os.environ).stdout
    elapsed = time.perf_counter() - started
    assert json.loads(out.splitlines()[-1])["cached"] is True
    return elapsed


def cache_hit_calls(project_dir: Path) -> tuple[float, list[str]]:
    from baker.cli import main

    with (
        counting_aws_calls() as calls,
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        started = time.perf_counter()
        code = main(["--project", str(project_dir), "--local", "--output", "json", "bake", "-e", "dev"])
        elapsed = time.perf_counter() - started
    assert code == 0
    return elapsed, list(calls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="warm bakes and by-hand runs (default 3)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_bake needs root (network namespace, overlay mounts)", file=sys.stderr)
        return 2
    import logging

    logging.getLogger("baker").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="baker-bench-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "project").mkdir()
        project_dir = make_project(tmp_path / "project")
        with own_cloud(tmp_path / "cloud"):
            cold, first = one_bake(project_dir)
            warm = []
            for _ in range(args.rounds):
                warm.append(one_bake(project_dir, force=True)[0])
            hit_cli = [cache_hit_command(project_dir) for _ in range(args.rounds)]
            hit_inproc, calls = cache_hit_calls(project_dir)

            # baker's overhead: alternate a forced bake and a by-hand packer build on the same template
            baker_runs, hand_runs, inside = [], [], []
            for _ in range(args.rounds):
                seconds, result = one_bake(project_dir, force=True)
                baker_runs.append(seconds)
                inside.append((seconds - result["packer_seconds"]) / result["packer_seconds"])
                hand_runs.append(packer_by_hand(project_dir))

    # the machine is shared: the fastest run of each is the one least disturbed by others
    b, h = min(baker_runs), min(hand_runs)
    print(f"bake (local cloud, Packer {'.'.join(map(str, render.packer_version()))}, {args.rounds} rounds)")
    print(f"  cold bake (first in a fresh cloud):     {cold:6.2f} s   -> {first['ami_id']}")
    print(
        f"  warm bake (--force, same recipe):       {statistics.median(warm):6.2f} s   median of "
        + ", ".join(f"{w:.2f}" for w in warm)
    )
    print(
        f"  cache hit, whole command (new process): {statistics.median(hit_cli):6.2f} s   median of "
        + ", ".join(f"{w:.2f}" for w in hit_cli)
        + "   (target < 2 s)"
    )
    print(
        f"  cache hit, in-process:                  {hit_inproc:6.2f} s   AWS calls: {len(calls)} "
        f"({', '.join(calls)})   (target <= 2)"
    )
    print(
        f"  baker bake vs packer build by hand:     {b:6.2f} s vs {h:.2f} s (fastest of each)   overhead "
        f"{(b - h) / h * 100:+.1f} %   (target <= 5 %)"
    )
    print(
        "  baker's own time around its packer run: "
        + ", ".join(f"{x * 100:+.1f} %" for x in inside)
        + " of the packer run, in the same bake"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
