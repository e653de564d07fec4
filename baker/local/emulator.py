"""The local cloud's AWS emulator: moto in server mode, in a process of ours, with baker's extensions.

Run as ``python -m baker.local.emulator`` inside the local cloud's network namespace (``baker local
up`` does that and records the PID). A process of our own, rather than ``moto_server``, because the
extensions (baker.local.moto) must be installed into the same interpreter before it serves, and
because ``/_baker/...`` (the health knob, the inventory) is served next to the AWS APIs.

It refuses to start in a network namespace that has anything but loopback: the instances it hands
out have fake addresses that nothing may ever reach.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from baker.local import kernel

log = logging.getLogger("baker")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


def serve(host: str, port: int, stop: threading.Event) -> None:
    """Serve until ``stop`` is set."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from baker.local import api, moto
    from baker.local.moto import refresh, state, target_health

    class Server(ThreadedMotoServer):
        """moto's threaded server with ``/_baker/...`` in front of its dispatcher."""

        def _server_entry(self) -> None:
            app = api.wsgi(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    moto.install()
    server = Server(ip_address=host, port=port, verbose=False)
    server.start()
    refresh.REFRESHES.start_thread()
    state.HEALTH.after_tick = moto.after_health_checks
    state.HEALTH.start_thread(target_health.live_targets)
    log.info("baker emulator (moto) listening on http://%s:%d, pid %d", host, port, os.getpid())
    stop.wait()
    server.stop()
    state.BALANCERS.close()
    if state.INSTANCES is not None:
        log.info("powering off the live instances")
        state.INSTANCES.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m baker.local.emulator", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--initial-seconds",
        type=float,
        default=None,
        help="seconds a new target reports 'initial' before it is healthy",
    )
    parser.add_argument(
        "--refresh-timeout",
        type=float,
        default=None,
        help="seconds a refresh batch may stay unhealthy before the refresh fails",
    )
    parser.add_argument(
        "--state-dir",
        default=None,
        help="the local cloud's state dir: image content, snapshots' blocks, the instances' disks",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="the root filesystem cache (the source image's disk)"
    )
    parser.add_argument(
        "--enforce-iam", action="store_true", help="evaluate assumed roles' IAM policies on every call"
    )
    parser.add_argument("--max-instances", type=int, default=None, help="live instances (containers) at most")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    # one line per request would grow the log for the life of the cloud; errors still show
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    extra = [i for i in kernel.net_interfaces() if i != "lo"]
    if extra or not args.host.startswith("127."):
        print(
            f"baker emulator: refusing to run outside a loopback-only network namespace "
            f"(interfaces: {', '.join(extra) or 'lo'}, host {args.host})",
            file=sys.stderr,
        )
        return 2

    from baker.local.moto import state

    if args.initial_seconds is not None:
        state.SETTINGS.initial_seconds = args.initial_seconds
    if args.refresh_timeout is not None:
        state.SETTINGS.refresh_timeout = args.refresh_timeout
    if args.max_instances is not None:
        state.SETTINGS.max_instances = args.max_instances
    if args.enforce_iam:
        from baker.local.moto.policy_evaluation import ENFORCEMENT

        ENFORCEMENT.set(on=True)
    if args.state_dir:
        from baker.local.blocks import BlockStore
        from baker.local.instances import Instances

        cache = Path(args.cache_dir) if args.cache_dir else None
        state.INSTANCES = Instances(
            Path(args.state_dir), max_live=state.SETTINGS.max_instances, cache_dir=cache
        )
        state.BLOCKS = BlockStore(Path(args.state_dir) / "snapshots")

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serve(args.host, args.port, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
