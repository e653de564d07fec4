"""The example app answers what the load balancer and the smoke checks ask, on a free loopback port."""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "examples" / "hello-web"
# no proxy, whatever the machine's environment says: the app is on loopback
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextmanager
def hello_web(tmp_path: Path, *, version: str | None = None, **settings: str) -> Iterator[str]:
    """Run a copy of the app (with an optional VERSION file next to it); yields its base URL."""
    app_dir = tmp_path / "app"
    app_dir.mkdir(exist_ok=True)
    shutil.copy2(APP / "hello_web.py", app_dir / "hello_web.py")
    if version is not None:
        (app_dir / "VERSION").write_text(version + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELLO_")}
    env.update({"HELLO_BIND": "127.0.0.1", "HELLO_PORT": "0", **settings})
    proc = subprocess.Popen(
        [sys.executable, str(app_dir / "hello_web.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        m = re.search(r"listening on (127\.0\.0\.1):(\d+)$", line.strip())
        assert m, f"hello-web did not start: {line!r}"
        yield f"http://127.0.0.1:{m.group(2)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get(url: str) -> tuple[int, str]:
    try:
        with _OPENER.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_healthz_answers_ok(tmp_path):
    with hello_web(tmp_path) as url:
        assert get(url + "/healthz") == (200, "ok\n")


def test_unhealthy_switch_makes_healthz_fail(tmp_path):
    with hello_web(tmp_path, HELLO_UNHEALTHY="1") as url:
        assert get(url + "/healthz") == (503, "unhealthy\n")
        # the rest of the app still answers: only the health gate sees the bad release
        assert get(url + "/")[0] == 200


def test_broken_paths_answer_500_while_healthz_stays_healthy(tmp_path):
    with hello_web(tmp_path, version="2.0.0", HELLO_BROKEN_PATHS="/version, /") as url:
        assert get(url + "/version") == (500, "broken (HELLO_BROKEN_PATHS)\n")
        assert get(url + "/")[0] == 500
        assert get(url + "/healthz") == (200, "ok\n"), "the health gate sees nothing wrong"


def test_unhealthy_zero_is_healthy(tmp_path):
    with hello_web(tmp_path, HELLO_UNHEALTHY="0") as url:
        assert get(url + "/healthz") == (200, "ok\n")


def test_version_answers_the_packaged_version(tmp_path):
    with hello_web(tmp_path, version="1.2.3+4.gabc1234") as url:
        assert get(url + "/version") == (200, "1.2.3+4.gabc1234\n")


def test_version_from_source_is_unknown(tmp_path):
    with hello_web(tmp_path) as url:
        assert get(url + "/version") == (200, "unknown\n")


def test_root_answers_the_greeting(tmp_path):
    with hello_web(tmp_path, HELLO_GREETING="hello from staging") as url:
        assert get(url + "/") == (200, "hello from staging\n")
        assert get(url + "/nope")[0] == 404


def test_default_env_file_sets_every_key():
    keys = {
        line.split("=", 1)[0]
        for line in (APP / "default.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert keys == {"HELLO_BIND", "HELLO_PORT", "HELLO_GREETING", "HELLO_UNHEALTHY"}
    assert "HELLO_PORT=8080" in (APP / "default.env").read_text()


@pytest.mark.parametrize("port", ["http", "70000"])
def test_bad_port_is_refused_with_a_message(tmp_path, port):
    env = {**os.environ, "HELLO_BIND": "127.0.0.1", "HELLO_PORT": port}
    proc = subprocess.run(
        [sys.executable, str(APP / "hello_web.py")], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode != 0
    assert "HELLO_PORT" in proc.stderr
