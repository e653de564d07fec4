"""Figures for the Terraform commands a deploy runs. Run: python bench/bench_terraform.py [--runs N]

Prints:
- the CPU time and peak memory of a command that loads the AWS provider's schema (``terraform
  validate`` of a module that requires it: what each plan, show and apply pays first), under Go's
  default GOGC=100 and under the GOGC=400 that baker sets for Terraform (``baker.terraform.GOGC``);
- ``Terraform.init()`` the first time in a working directory and again for the same module and
  backend (baker's init stamp: the second one runs no ``terraform init``).

Needs the provider mirror that ``make deps`` installs; talks to no network (CHECKPOINT_DISABLE,
the filesystem mirror, no backend), so it needs no namespace of its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from baker import terraform as tf  # noqa: E402

MODULE = """terraform {
  required_providers {
    aws = { source = "hashicorp/aws" }
  }
}

provider "aws" {
  region                      = "us-east-1"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
}

resource "aws_launch_template" "this" {
  name_prefix = "bench-"
  image_id    = "ami-12345678"
}
"""


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one command and the processes it waited for (its provider)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
        )
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    mirror = tf.find_mirror(None)
    if mirror is None:
        raise SystemExit("no Terraform provider mirror (make deps installs one)")
    with tempfile.TemporaryDirectory(prefix="baker-bench-terraform-") as tmp:
        module = Path(tmp) / "module"
        module.mkdir()
        (module / "main.tf").write_text(MODULE)
        t = tf.Terraform(module_dir=module, work_dir=Path(tmp) / "work", mirror=mirror, timeout=300)
        started = time.monotonic()
        t.init()
        first = time.monotonic() - started
        started = time.monotonic()
        tf.Terraform(module_dir=module, work_dir=Path(tmp) / "work", mirror=mirror, timeout=300).init()
        again = time.monotonic() - started
        print(f"Terraform.init(): first {first:.2f} s, again for the same module and backend {again:.3f} s")

        validate = [t.binary, f"-chdir={t.work_dir}", "validate", "-no-color"]
        base = t.environ()
        for gogc in ("100", tf.GOGC):
            env = {**base, "GOGC": gogc}
            runs = [measured(validate, env) for _ in range(args.runs)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            rss = max(r[2] for r in runs)
            print(
                f"schema-loading command (terraform validate), GOGC={gogc}: median wall {wall:.2f} s, "
                f"median CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB ({args.runs} runs)"
            )


if __name__ == "__main__":
    main()
