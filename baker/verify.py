"""`baker verify`: boot one instance of an AMI, run the project's smoke checks on it over SSH.

Like Packer, verify launches its instance with the environment's bake network settings (subnet,
VPC, instance type) and a temporary key pair and security group of its own, and always removes
all three again: on success, on a failing check, on an error and on Ctrl-C. Only when every check
passes is the AMI tagged ``baker:verified`` (UTC time and a digest of the checks that passed, so a
changed list of checks is visibly a different verification).

The SSH host key is checked, never accepted on first sight:
- on AWS it is the key cloud-init prints between ``-----BEGIN SSH HOST KEY KEYS-----`` and
  ``-----END SSH HOST KEY KEYS-----`` on the instance's console, read with GetConsoleOutput: the
  EC2 API, not the network path to the instance, vouches for it;
- in the local cloud the instance's disk is on this machine, so the key is read from the host key
  file cloud-init wrote there (``baker.local.instances``), and the SSH connection is a socket
  made inside the instance's own network namespace (to 127.0.0.1:22 there), which paramiko uses
  as its transport. No forwarder listens anywhere for it, and nothing ever connects to the
  address the emulator made up for the instance.

Command checks run over SSH and pass on exit status 0; http checks are fetched *on the instance*
(python3 there, which every image baker provisions has for Ansible) and pass on a 2xx answer.
Either may require text in the output (``expect``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import re
import secrets
import shlex
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from baker import images, provenance
from baker.aws import AWS, error_code
from baker.config import Environment, Project, SmokeCheck
from baker.errors import AWSError, BakerError, Interrupted, ToolError, UsageError, VerifyFailed

log = logging.getLogger("baker")

TAG = provenance.VERIFIED
SSH_PORT = 22
OUTPUT_EXCERPT = 400
#: run on the instance before the checks: until its first boot is over (user data included)
BOOT_FINISHED = (
    "if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null 2>&1; fi; "
    "systemctl is-system-running --wait 2>/dev/null || true"
)
#: run on the instance for an http check: status line first, then the body
HTTP_FETCH = (
    "import sys, urllib.request, urllib.error\n"
    "try:\n"
    "    r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
    "    code, body = r.status, r.read()\n"
    "except urllib.error.HTTPError as e:\n"
    "    code, body = e.code, e.read()\n"
    "print(code)\n"
    "sys.stdout.write(body.decode(errors='replace'))\n"
)


class Reach(Protocol):
    """How verify reaches an instance's sshd and knows its host key."""

    def host_keys(self, instance: dict[str, Any]) -> list[str] | None:
        """The instance's host keys ("ssh-ed25519 AAAA..."), None while not known yet."""

    def connect(self, instance: dict[str, Any], port: int, timeout: float) -> socket.socket:
        """A connected socket to the instance's port."""


def console_host_keys(console: str) -> list[str]:
    """Host keys cloud-init printed on the console (AWS's way of vouching for them)."""
    block = re.search(r"-----BEGIN SSH HOST KEY KEYS-----(.*?)-----END SSH HOST KEY KEYS-----", console, re.S)
    if not block:
        return []
    return [
        " ".join(line.split()[:2]) for line in block.group(1).splitlines() if line.strip().startswith("ssh-")
    ]


class AWSReach:
    """On AWS: host keys from the console output, SSH to the instance's public or private address."""

    def __init__(self, aws: AWS) -> None:
        self.aws = aws

    def host_keys(self, instance: dict[str, Any]) -> list[str] | None:
        out = self.aws.client("ec2").get_console_output(InstanceId=instance["InstanceId"], Latest=True)
        text = out.get("Output") or ""
        with contextlib.suppress(ValueError):  # the API sends it base64-encoded
            text = base64.b64decode(text, validate=True).decode(errors="replace")
        return console_host_keys(text) or None

    def connect(self, instance: dict[str, Any], port: int, timeout: float) -> socket.socket:
        address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")
        if not address:
            raise UsageError(f"instance {instance['InstanceId']} has no address to SSH to")
        return socket.create_connection((address, port), timeout=timeout)


def checks_digest(checks: list[SmokeCheck]) -> str:
    """A short digest of the checks: the same list of checks, the same digest."""
    return provenance.checks_digest(c.model_dump() for c in checks)


def verified_tag(checks: list[SmokeCheck], now: datetime) -> str:
    """The value of ``baker:verified`` (what the policy gate's require_verified reads back)."""
    return provenance.verified_value(now, checks_digest(checks))


def judge(check: SmokeCheck, status: int, output: str) -> tuple[bool, str]:
    """Pure: whether one check passed, and the output excerpt to show."""
    if check.http:
        first, _, body = output.partition("\n")
        code = int(first) if first.strip().isdigit() else 0
        ok = 200 <= code < 300 and status == 0
        shown = f"HTTP {code or '?'}: {body}" if code else output
    else:
        ok, shown = status == 0, output
    if ok and check.expect is not None and check.expect not in (body if check.http else output):
        ok = False
        shown = f"expected {check.expect!r} in the output: {shown}"
    shown = shown.strip()
    return ok, shown[-OUTPUT_EXCERPT:] if len(shown) > OUTPUT_EXCERPT else shown


class Verify:
    """Boots one instance of an AMI, runs the smoke checks on it, tags the AMI when all pass."""

    def __init__(
        self,
        project: Project,
        env: Environment,
        aws: AWS,
        *,
        reach: Reach | None = None,
        boot_timeout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.project = project
        self.env = env
        self.aws = aws
        self.reach = reach or AWSReach(aws)
        self.boot_timeout = boot_timeout
        self.clock = clock
        self.sleep = sleep

    @property
    def checks(self) -> list[SmokeCheck]:
        return list(self.project.settings.smoke_checks)

    def run(self, ami_id: str) -> dict[str, Any]:
        if not self.checks:
            raise UsageError("baker.yml has no smoke_checks: there is nothing to verify an AMI with")
        ec2 = self.aws.client("ec2")
        image = images.require(ec2, images.check_id(ami_id), self.aws.region)
        name = f"baker-verify-{self.project.app.name}-{secrets.token_hex(4)}"
        made: dict[str, str] = {}
        result: dict[str, Any] = {"ami_id": ami_id, "verified": False, "checks": []}
        try:
            instance = self._launch(ami_id, name, made)
            result["instance_id"] = instance["InstanceId"]
            result["checks"] = self._check(instance, made["private_key"])
        except KeyboardInterrupt as exc:
            result["cleanup"] = self._clean_up(made)
            raise Interrupted(
                f"verify of {ami_id} interrupted; its instance, key pair and security group were removed",
                details=result,
            ) from exc
        except BaseException:
            result["cleanup"] = self._clean_up(made)
            raise
        result["cleanup"] = self._clean_up(made)
        failed = [c["name"] for c in result["checks"] if not c["ok"]]
        if failed:
            raise VerifyFailed(
                f"{ami_id} failed {len(failed)} of {len(result['checks'])} smoke check(s): "
                + ", ".join(failed),
                details=result,
            )
        value = verified_tag(self.checks, datetime.now(UTC))
        images.tag(ec2, image, {TAG: value})  # the image and its snapshots, like every provenance tag
        result.update(verified=True, tag=value)
        return result

    # -- steps --

    def _launch(self, ami_id: str, name: str, made: dict[str, str]) -> dict[str, Any]:
        ec2 = self.aws.client("ec2")
        bake = self.env.settings.bake
        pair = ec2.create_key_pair(KeyName=name, KeyType="ed25519")
        made["key_name"], made["private_key"] = name, pair["KeyMaterial"]
        vpc = bake.vpc_id
        if vpc is None and bake.subnet_id:
            vpc = ec2.describe_subnets(SubnetIds=[bake.subnet_id])["Subnets"][0]["VpcId"]
        if vpc is None:
            default = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}]).get("Vpcs", [])
            if not default:
                raise UsageError("no bake.vpc_id or bake.subnet_id and the region has no default VPC")
            vpc = default[0]["VpcId"]
        sg = ec2.create_security_group(GroupName=name, Description="baker verify: SSH in", VpcId=vpc)[
            "GroupId"
        ]
        made["security_group"] = sg
        ec2.authorize_security_group_ingress(
            GroupId=sg,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": SSH_PORT, "ToPort": SSH_PORT,
                            "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "baker verify"}]}],
        )  # fmt: skip
        args: dict[str, Any] = {
            "ImageId": ami_id,
            "InstanceType": bake.instance_type,
            "KeyName": name,
            "SecurityGroupIds": [sg],
            "MinCount": 1,
            "MaxCount": 1,
            "TagSpecifications": [
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "Name", "Value": name},
                        {"Key": "baker:app", "Value": self.project.app.name},
                    ],
                }
            ],
        }
        if bake.subnet_id:
            args["SubnetId"] = bake.subnet_id
        instance = ec2.run_instances(**args)["Instances"][0]
        made["instance_id"] = instance["InstanceId"]
        log.info(
            "verify: %s booting %s (key pair and security group %s)", instance["InstanceId"], ami_id, name
        )
        ec2.get_waiter("instance_running").wait(InstanceIds=[instance["InstanceId"]])
        found = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"][
            0
        ]
        return dict(found)

    def _check(self, instance: dict[str, Any], private_key: str) -> list[dict[str, Any]]:
        import paramiko

        key = paramiko.Ed25519Key.from_private_key(io.StringIO(private_key))
        client = self._ssh(instance, key)
        try:
            status, state = _exec(client, BOOT_FINISHED, timeout=self.boot_timeout)
            log.info("verify: %s booted (%s)", instance["InstanceId"], state.strip() or "no systemd state")
            results = []
            for check in self.checks:
                if check.http:
                    command = f"python3 -c {shlex.quote(HTTP_FETCH)} {shlex.quote(check.http)}"
                else:
                    command = str(check.command)
                status, output = _exec(client, command)
                ok, shown = judge(check, status, output)
                log.info("verify: %s %s", "pass" if ok else "FAIL", check.name)
                results.append({"name": check.name, "ok": ok, "output": shown})
            return results
        finally:
            client.close()

    def _ssh(self, instance: dict[str, Any], key: Any) -> Any:
        """SSH as the bake user, trusting only the host key the cloud vouches for; waits for sshd."""
        import paramiko

        iid = instance["InstanceId"]
        user = self.env.settings.bake.ssh_username
        deadline = self.clock() + self.boot_timeout
        delay, last = 0.5, "no host key known yet"
        while True:
            known = self.reach.host_keys(instance)
            if known:
                client = paramiko.SSHClient()
                for line in known:
                    kind, blob = line.split()[:2]
                    client.get_host_keys().add(
                        iid, kind, paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
                    )
                client.set_missing_host_key_policy(paramiko.RejectPolicy())
                try:
                    sock = self.reach.connect(instance, SSH_PORT, timeout=10)
                    client.connect(
                        iid,
                        port=SSH_PORT,
                        username=user,
                        pkey=key,
                        sock=sock,
                        timeout=15,
                        banner_timeout=15,
                        auth_timeout=15,
                        allow_agent=False,
                        look_for_keys=False,
                    )
                    return client
                except paramiko.BadHostKeyException as exc:
                    client.close()
                    raise ToolError(
                        f"{iid} presented a host key the cloud does not vouch for: {exc}"
                    ) from exc
                except (OSError, paramiko.SSHException) as exc:
                    client.close()
                    last = f"{type(exc).__name__}: {exc}"
            if self.clock() > deadline:
                raise ToolError(
                    f"{iid}: SSH did not answer as {user} within {self.boot_timeout:.0f}s ({last})",
                    tool="ssh",
                )
            self.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    def _clean_up(self, made: dict[str, str]) -> list[str]:
        """Terminate the instance, then delete its security group and key pair; says what failed."""
        ec2 = self.aws.client("ec2")
        problems: list[str] = []
        if "instance_id" in made:
            try:
                ec2.terminate_instances(InstanceIds=[made["instance_id"]])
                ec2.get_waiter("instance_terminated").wait(InstanceIds=[made["instance_id"]])
            except (AWSError, BakerError) as exc:
                problems.append(f"instance {made['instance_id']}: {exc.message}")
        if "security_group" in made:
            for attempt in range(10):  # AWS lets it go only once the instance is gone
                try:
                    ec2.delete_security_group(GroupId=made["security_group"])
                    break
                except AWSError as exc:
                    if attempt == 9 or error_code(exc) != "DependencyViolation":
                        problems.append(f"security group {made['security_group']}: {exc.message}")
                        break
                    self.sleep(3)
        if "key_name" in made:
            try:
                ec2.delete_key_pair(KeyName=made["key_name"])
            except AWSError as exc:
                problems.append(f"key pair {made['key_name']}: {exc.message}")
        for problem in problems:
            log.warning("verify: could not remove %s", problem)
        return problems


def _exec(client: Any, command: str, timeout: float = 120) -> tuple[int, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode(errors="replace") + stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out
