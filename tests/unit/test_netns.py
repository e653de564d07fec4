import socket
import subprocess

import pytest

from baker.errors import UsageError
from baker.local import netns


def test_the_test_run_has_only_loopback(isolated):
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    assert netns.inside(isolated)


@pytest.mark.parametrize("address", ["10.0.0.1", "54.12.34.56", "172.16.0.1", "192.168.1.1"])
def test_non_loopback_addresses_are_unreachable(isolated, address):
    with socket.socket() as s:
        s.settimeout(1)
        with pytest.raises(OSError):
            s.connect((address, 22))


def test_loopback_works(isolated):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=2):
            pass


def test_names_must_be_bakers_own():
    with pytest.raises(UsageError, match="must start with 'baker'"):
        netns.create("host")
