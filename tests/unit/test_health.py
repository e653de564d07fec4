"""The health wait (``Watch.wait``): its deadline, its polls and the fail-early rule, on time that
only moves when the wait sleeps (``tests.harness.FakeTime``) and a stand-in for the four AWS reads
of a look (``FleetReads``), so no test waits and none needs the local cloud."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from baker.health import Watch
from tests.harness import FakeTime

NEW = "ami-new"


@dataclass(frozen=True)
class Look:
    """What AWS says at one poll: instance id -> (AMI, target health), and the refresh's state."""

    instances: dict[str, tuple[str, str]] = field(default_factory=dict)
    refresh: str = "InProgress"
    desired: int = 2
    #: the group is gone (deleted outside Terraform)
    gone: bool = False


def on_new(*health: str, refresh: str = "InProgress") -> Look:
    return Look({f"i-{n}": (NEW, state) for n, state in enumerate(health)}, refresh)


class FleetReads:
    """A stand-in for the AWS reads of one look (DescribeAutoScalingGroups, DescribeInstanceRefreshes,
    DescribeTargetHealth, DescribeInstances): each look gets the next of ``looks``, the last one
    for ever after. It is every client the watch asks for."""

    region = "us-east-1"
    endpoint_url = None

    def __init__(self, *looks: Look) -> None:
        self.looks = looks
        self.seen = 0
        self.now = looks[0]

    def client(self, service: str, attempts: int | None = None) -> FleetReads:
        return self

    def describe_auto_scaling_groups(self, **kwargs: Any) -> dict[str, Any]:
        # the group is the first read of a look: the next look starts here
        self.now = self.looks[min(self.seen, len(self.looks) - 1)]
        self.seen += 1
        if self.now.gone:
            return {"AutoScalingGroups": []}
        members = [{"InstanceId": i, "LifecycleState": "InService"} for i in self.now.instances]
        return {"AutoScalingGroups": [{"DesiredCapacity": self.now.desired, "Instances": members}]}

    def describe_instance_refreshes(self, **kwargs: Any) -> dict[str, Any]:
        refresh = {
            "InstanceRefreshId": "r-1",
            "Status": self.now.refresh,
            "StartTime": "2026-01-01T00:00:00Z",
        }
        return {"InstanceRefreshes": [refresh]}

    def describe_target_health(self, **kwargs: Any) -> dict[str, Any]:
        described = [
            {"Target": {"Id": i, "Port": 8080}, "TargetHealth": {"State": health}}
            for i, (_, health) in self.now.instances.items()
        ]
        return {"TargetHealthDescriptions": described}

    def describe_instances(self, **kwargs: Any) -> dict[str, Any]:
        found = [{"InstanceId": i, "ImageId": ami} for i, (ami, _) in self.now.instances.items()]
        return {"Reservations": [{"Instances": found}]}


def watch(reads: FleetReads, time: FakeTime, unhealthy_timeout: float | None = None) -> Watch:
    return Watch(
        reads,  # type: ignore[arg-type]  # the stand-in answers the reads a look makes
        "hello-web-dev",
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/hello-web-dev-tg/1",
        poll_min=2,
        poll_max=15,
        unhealthy_timeout=unhealthy_timeout,
        clock=time.clock,
    )


def test_a_fleet_that_gets_healthy_ends_the_wait_with_no_failure():
    time = FakeTime()
    reads = FleetReads(
        on_new("initial", "initial"),
        on_new("healthy", "initial"),
        on_new("healthy", "healthy", refresh="Successful"),
    )
    seen: list[int] = []
    w = watch(reads, time)
    w.on_poll = lambda state: seen.append(state.healthy)
    state, failure = w.wait(NEW, deadline=time.now + 600)
    assert failure is None
    assert (state.healthy, state.desired, state.done) == (2, 2, True)
    assert seen == [0, 1, 2], "every look is reported"
    assert time.slept == [2, 2], "something moved at each look: looked again soon"


def test_past_the_deadline_the_wait_fails_saying_so_and_how_far_it_got():
    time = FakeTime()
    deadline = time.now + 60
    state, failure = watch(FleetReads(on_new("healthy", "initial")), time).wait(NEW, deadline=deadline)
    assert failure == f"not healthy within the deadline: 1/2 healthy on {NEW}"
    assert state.healthy == 1
    assert time.now == deadline, "the last sleep ends on the deadline, not after it"


def test_a_fleet_that_does_not_move_is_polled_less_often_up_to_poll_max():
    time = FakeTime()
    watch(FleetReads(on_new("initial", "initial")), time).wait(NEW, deadline=time.now + 120)
    assert time.slept[:6] == [2, 3, 4.5, 6.75, 10.125, 15]
    assert max(time.slept) == 15


def test_a_new_ami_without_a_healthy_target_fails_early_by_unhealthy_timeout():
    time = FakeTime()
    reads = FleetReads(on_new("initial", "initial"), on_new("unhealthy", "initial"))
    start = time.now
    state, failure = watch(reads, time, unhealthy_timeout=30).wait(NEW, deadline=start + 600)
    assert failure is not None
    assert f"no target on {NEW} became healthy in the 30s since one reported unhealthy" in failure
    assert "(deploy.unhealthy_timeout: 30s)" in failure
    assert state.new_states == {"unhealthy": 1, "initial": 1}
    # first unhealthy seen at the second look (2 s in); failed exactly when 30 s had passed since
    assert time.now == start + 2 + 30, "looked again right when the early failure was due"


def test_a_healthy_target_on_the_new_ami_stops_the_early_failure():
    time = FakeTime()
    reads = FleetReads(
        on_new("unhealthy", "initial"),
        on_new("healthy", "unhealthy"),
        on_new("healthy", "healthy", refresh="Successful"),
    )
    state, failure = watch(reads, time, unhealthy_timeout=1).wait(NEW, deadline=time.now + 600)
    assert (failure, state.done) == (None, True)


def test_without_unhealthy_timeout_only_the_deadline_ends_an_unhealthy_rollout():
    time = FakeTime()
    _, failure = watch(FleetReads(on_new("unhealthy", "unhealthy")), time).wait(NEW, deadline=time.now + 300)
    assert failure == f"not healthy within the deadline: 0/2 healthy on {NEW}"


def test_a_refresh_that_ends_badly_fails_the_wait_at_once():
    time = FakeTime()
    reads = FleetReads(on_new("initial", "initial"), on_new("initial", "initial", refresh="Cancelled"))
    _, failure = watch(reads, time).wait(NEW, deadline=time.now + 600)
    assert failure == "the instance refresh ended Cancelled"
    assert reads.seen == 2


def test_a_group_deleted_during_the_wait_fails_it_naming_the_group():
    time = FakeTime()
    reads = FleetReads(on_new("initial", "initial"), Look(gone=True))
    state, failure = watch(reads, time).wait(NEW, deadline=time.now + 600)
    assert failure is not None and "the Auto Scaling group hello-web-dev is gone" in failure
    assert state.desired == 0
