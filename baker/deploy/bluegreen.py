"""Blue/green deploys (``deploy.strategy: blue_green``): test the new fleet before it takes traffic,
move traffic by weight, roll back by moving the weights back.

Two Auto Scaling groups (blue, green), each with its own launch template (image and runtime user
data) and target group, behind the one listener users reach, whose forward action weighs the two
target groups (terraform/bluegreen.tf). A release goes to the *idle* color:

1. the idle color gets the new AMI and runtime at the live color's capacity (one Terraform apply;
   user traffic stays where it was: the weights do not change);
2. the same health gate as a rolling deploy (health.Watch: the deadline and the fail-early rule of
   ``deploy.unhealthy_timeout``), pointed at the idle color's group and target group;
3. the smoke checks with an ``http`` URL are fetched through the **test route**, a second listener
   of the same load balancer (``test_listener_port``, 8081 by default) that forwards only to the
   color under test. A second port rather than a header rule on the users' listener: a port is
   closed to users by the load balancer's security group (``test_allowed_cidrs``, the VPC by
   default), so nobody reaches the untested fleet by guessing or replaying a header, and a rule
   that a typo breaks never sits in front of user traffic;
4. traffic moves in ``deploy.traffic_steps`` (``[100]``: at once), each step watched for
   ``deploy.step_seconds``: every target of the new color healthy, and no more than
   ``deploy.max_5xx`` 5xx answers of its target group (CloudWatch ``HTTPCode_Target_5XX_Count``);
   the listener's weights are set directly (ModifyListener: effective at once) and then recorded
   by a Terraform apply of the same variables, so the next plan shows nothing to change;
5. the previous color keeps its capacity for ``deploy.keep_previous``: a failure at any step, or
   ``baker rollback`` while it has capacity, moves the weights back and launches nothing. After
   that, ``baker retire -e ENV`` scales it to zero (the next deploy reuses the idle color anyway).
   For CI, ``retire`` in a scheduled job fits best: the release job ends when the new color is
   live, and the rollback window is kept whatever the release cadence.

What the local cloud does: both listeners answer on loopback and forward by weight to the healthy
live instances of each color (baker/local/lb.py), so the smoke checks go through the test route
(the test route the CLI hands in); they are reported as skipped (``ok: None``, with why) behind record-only
instances, for which nothing answers. Its load balancer counts each answer it relays as an ALB
does, and the emulator's CloudWatch serves the counts (baker/local/moto/metrics.py), so a step fails on
the 5xx real users got there too.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from baker.deploy import test_route, traffic
from baker.deploy.colors import COLORS, ColorGroup, Colors, arn_suffix, other, step_weights, variables
from baker.deploy.context import Context
from baker.errors import BakerError, Refused
from baker.health import Rollout, Watch, duration
from baker.ledger import Release
from baker.plan import gate
from baker.provenance import parse_iso, utc_now

log = logging.getLogger("baker")


def values(
    spec: Mapping[str, Mapping[str, Any]], *, live: str, test: str, weights: Mapping[str, int]
) -> dict[str, Any]:
    """The strategy's Terraform variables: the module's blue/green switch and the colors."""
    return {"strategy": "blue_green", **variables(spec, live=live, test=test, weights=weights)}


def refuse_leaving_blue_green(env: Any, applied: Mapping[str, Any]) -> None:
    """From blue_green back to rolling, the rolling fleet is blue: refuse while blue does not
    serve everyone at capacity (the switch would move users onto it at once)."""
    colors = Colors.from_outputs(applied)
    if colors is None:
        return
    blue = colors.fleets["blue"]
    if colors.live == "blue" and colors.weights.get("blue") == 100 and blue.capacity > 0:
        return
    origin = env.origin("deploy", "strategy")
    raise Refused(
        f"switching deploy.strategy from blue_green to rolling ({origin}): "
        f"the rolling fleet is blue, and {colors.live} is live (blue: {blue.capacity} instances, "
        f"weight {colors.weights.get('blue', 0)}). Release onto blue with blue_green first "
        f"(or 'baker rollback -e {env.name}' to it), then switch",
        details={
            "outcome": "refused",
            "rule": "plan",
            "strategy_from": "blue_green",
            "strategy_to": "rolling",
        },
    )


class BlueGreen:
    """The blue/green strategy: rollouts onto the idle color, rollbacks by weight, retiring a color."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.aws = ctx.aws
        self.settings = ctx.env.settings.deploy
        #: the colors as they were before this run's rollout (what a rollback goes back to)
        self.before: Colors | None = None
        #: the last rollback moved the weights back and launched nothing
        self.by_weights = False

    # -- reading

    def current(self) -> Colors | None:
        return Colors.from_outputs(self.ctx.handoff.outputs())

    def watch(self, fleet: ColorGroup, known: frozenset[str] = frozenset()) -> Watch:
        return self.ctx.watch(fleet.asg_name, fleet.target_group_arn, known)

    def _known(self, fleet: ColorGroup | None) -> frozenset[str]:
        if fleet is None:
            return frozenset()
        try:
            return frozenset(r["InstanceRefreshId"] for r in self.watch(fleet).refreshes())
        except BakerError as exc:
            log.debug("refreshes of %s: %s", fleet.asg_name, exc.message)
            return frozenset()

    def _ready(self, colors: Colors, color: str, release: Release) -> bool:
        """Whether ``color`` already runs ``release`` at the live color's capacity, all healthy:
        then it takes the traffic by weights alone, launching nothing."""
        fleet, live = colors.fleets[color], colors.fleets[colors.live]
        if fleet.image_id != release.ami_id or fleet.runtime_env != release.runtime:
            return False
        if fleet.capacity <= 0 or fleet.capacity < live.capacity:
            return False
        try:
            return self.watch(fleet).look(fleet.image_id).done
        except BakerError as exc:
            log.info("cannot read %s: %s", fleet.asg_name, exc.message)
            return False

    # -- a rollout

    def next(
        self, colors: Colors | None, ami_id: str, runtime: Mapping[str, str]
    ) -> tuple[str, str | None, dict[str, dict[str, Any]], dict[str, int]]:
        """Where a release goes: (new color, live color or None, every color's spec, the weights
        kept while it is tested). The idle color gets it at the live color's capacity."""
        mine: dict[str, Any] = {"image_id": ami_id, "runtime_env": dict(runtime)}
        capacity = int(self.settings.variables.get("desired_capacity", 2))
        if colors is None:
            migrated = self.migrated()
            if migrated is not None:  # switched from rolling: the rolling fleet is blue, and live
                spec = {"blue": migrated, "green": {**mine, "capacity": migrated["capacity"]}}
                return "green", "blue", spec, step_weights("blue", 100)
            # the first blue/green deploy: nobody is served yet, blue takes everything at once
            spec = {"blue": {**mine, "capacity": capacity}, "green": {**mine, "capacity": 0}}
            return "blue", None, spec, step_weights("blue", 100)
        new, live = colors.idle, colors.live
        spec = colors.spec()
        spec[new] = {**mine, "capacity": colors.fleets[live].capacity}
        return new, live, spec, dict(colors.weights)

    def migrated(self) -> dict[str, Any] | None:
        """Blue's spec right after a switch from rolling (the rolling fleet is blue) when it has
        served: its live release's AMI and runtime, at the group's capacity."""
        outputs = self.ctx.handoff.outputs()
        live = self.ctx.ledger.live()
        if not outputs.get("asg_name") or live is None or live.ami_id is None:
            return None
        groups = (
            self.aws.client("autoscaling")
            .describe_auto_scaling_groups(AutoScalingGroupNames=[outputs["asg_name"]])
            .get("AutoScalingGroups", [])
        )
        capacity = int(groups[0]["DesiredCapacity"]) if groups else 0
        if capacity == 0:
            return None
        return {"image_id": live.ami_id, "capacity": capacity, "runtime_env": dict(live.runtime)}

    def planned(self, ami_id: str, runtime: Mapping[str, str], result: dict[str, Any]) -> dict[str, Any]:
        """--dry-run: the variables of the first apply (the new color launched, traffic unmoved)."""
        new, live, spec, weights = self.next(self.current(), ami_id, runtime)
        result.update({"color": new, "previous_color": live})
        return values(spec, live=live or new, test=new, weights=weights)

    def roll(
        self, release: Release, allow_replace: bool, health_timeout: int, result: dict[str, Any]
    ) -> tuple[Rollout, str | None]:
        """One release onto the idle color: launch, health gate, smoke checks through the test
        route, traffic by steps. Returns the last look at the new color and the failure (None:
        it is live). The colors as they were before are kept for the rollback (``before``)."""
        ctx = self.ctx
        assert release.ami_id is not None
        colors = self.current()
        self.before = colors
        new, live, spec, weights = self.next(colors, release.ami_id, release.runtime)
        release.color = new
        result.update({"color": new, "previous_color": live})
        by_weights = colors is not None and self._ready(colors, new, release)
        if by_weights:
            assert colors is not None
            log.info(
                "%s already runs %s at capacity and healthy: traffic moves by weights alone",
                new,
                release.ami_id,
            )
            result["launched"] = False
            ctx.records.intent(release)
            ctx.progress.applied_at = ctx.clock.monotonic()
            fleet = colors.fleets[new]
            state = self.watch(fleet).look(release.ami_id)
        else:
            known = self._known(colors.fleets.get(new) if colors else None)
            outputs = ctx.handoff.apply(
                release,
                ctx.records,
                allow_replace=allow_replace,
                result=result,
                values=values(spec, live=live or new, test=new, weights=weights),
            )
            colors_now = Colors.from_outputs(outputs)
            if colors_now is None:
                raise BakerError("terraform applied no blue_green output: is paths.terraform baker's module?")
            if self.before is None and live is not None:
                self.before = colors_now  # migrated: this apply moved no traffic, blue is what was live
            fleet = colors_now.fleets[new]
            self._record(release, fleet)
            ctx.ledger.write(release)
            result["launched"] = True
            watch = ctx.progress.watching = self.watch(fleet, known)
            applied = ctx.progress.applied_at = ctx.clock.monotonic()
            state, failure = watch.wait(release.ami_id, applied + health_timeout, started=applied)
            ctx.progress.watching = None
            if failure is not None:
                return (
                    state,
                    f"the new color {new} did not get healthy (no user traffic reached it): {failure}",
                )
            colors = colors_now
        self._record(release, fleet)
        smoke = self.smoke(colors, new, skip=by_weights)
        result["smoke"] = smoke
        bad = next((c for c in smoke if c["ok"] is False), None)
        if bad is not None:
            return state, (
                f"smoke check {bad['name']!r} failed through the test route of {new} "
                f"(no user traffic reached it): {bad['output']}"
            )
        if live is None:
            return state, None
        steps = [100] if release.kind == "rollback" else list(self.settings.traffic_steps)
        return self.shift(release, colors, new, steps, result)

    def _record(self, release: Release, fleet: ColorGroup) -> None:
        release.asg_name = fleet.asg_name
        release.launch_template_id = fleet.launch_template_id
        release.launch_template_version = fleet.launch_template_version

    # -- the test route (baker/deploy/test_route.py)

    def smoke(self, colors: Colors, color: str, *, skip: bool = False) -> list[dict[str, Any]]:
        return test_route.smoke(self.ctx, colors, color, skip=skip)

    # -- traffic

    def shift(
        self, release: Release, colors: Colors, new: str, steps: list[int], result: dict[str, Any]
    ) -> tuple[Rollout, str | None]:
        """Move the users' traffic to ``new`` step by step, each watched; the failure or None."""
        fleet = colors.fleets[new]
        state = self.watch(fleet).look(fleet.image_id)
        result["steps"] = []
        for percent in steps:
            last = percent == 100
            try:
                colors = self.weigh(
                    colors,
                    step_weights(new, percent),
                    live=new if last else colors.live,
                    test=new,
                    ami_id=fleet.image_id,
                    runtime=fleet.runtime_env,
                )
            except BakerError as exc:  # the weights may have moved: the rollback moves them back
                result["steps"].append({"percent": percent, "failure": exc.message})
                return state, f"traffic step {percent}% to {new} failed: {exc.message}"
            log.info("traffic: %d%% on %s (%s)", percent, new, release.ami_id)
            state, failure = self.watch_step(colors.fleets[new], colors)
            result["steps"].append({"percent": percent, "failure": failure})
            if failure is not None:
                return state, f"traffic step {percent}% to {new} failed: {failure}"
        return state, None

    def watch_step(self, fleet: ColorGroup, colors: Colors) -> tuple[Rollout, str | None]:
        """Watch the new color for ``deploy.step_seconds``: every target healthy, 5xx within bounds."""
        ctx = self.ctx
        started, since = ctx.clock.monotonic(), utc_now()
        watch = self.watch(fleet)
        interval = ctx.poll_min
        while True:
            state = watch.look(fleet.image_id)
            if ctx.progress.on_poll is not None:
                ctx.progress.on_poll(state)
            if state.healthy < max(state.desired, 1) or state.new_states.get("unhealthy"):
                return (
                    state,
                    f"{state.healthy}/{state.desired} targets of {fleet.color} healthy ({state.live()})",
                )
            errors = self.errors_5xx(fleet, colors, since)
            if errors > self.settings.max_5xx:
                return state, (
                    f"{errors} 5xx answers from {fleet.color}'s targets since the step began "
                    f"(deploy.max_5xx: {self.settings.max_5xx})"
                )
            left = self.settings.step_seconds - (ctx.clock.monotonic() - started)
            if left <= 0:
                return state, None
            log.info("watching %s for %s more", fleet.color, duration(left))
            ctx.clock.sleep(min(interval, left))
            interval = min(interval * 1.5, ctx.poll_max)

    def errors_5xx(self, fleet: ColorGroup, colors: Colors, since: dt.datetime) -> int:
        """5xx answers of the color's targets since ``since``, as CloudWatch has them."""
        dims = [{"Name": "TargetGroup", "Value": arn_suffix(fleet.target_group_arn, "")}]
        if colors.load_balancer_arn:
            dims.insert(
                0, {"Name": "LoadBalancer", "Value": arn_suffix(colors.load_balancer_arn, "loadbalancer/")}
            )
        resp = self.aws.client("cloudwatch").get_metric_statistics(
            Namespace="AWS/ApplicationELB",
            MetricName="HTTPCode_Target_5XX_Count",
            Dimensions=dims,
            StartTime=since,
            EndTime=utc_now() + dt.timedelta(minutes=1),
            Period=60,
            Statistics=["Sum"],
        )
        return int(sum(p.get("Sum", 0) for p in resp.get("Datapoints", [])))

    def weigh(
        self,
        colors: Colors,
        weights: Mapping[str, int],
        *,
        live: str,
        test: str,
        ami_id: str,
        runtime: Mapping[str, str],
        spec: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Colors:
        """Set the users' listener's weights now (ModifyListener), then let Terraform record the
        same variables (with ``spec``, e.g. a failed color scaled to zero). Returns the new state."""
        groups = {c: colors.fleets[c].target_group_arn for c in COLORS}
        traffic.set_weights(self.aws, colors.listener_arn, groups, weights)
        terraform = self.ctx.handoff.terraform
        plan = self.ctx.handoff.plan(
            ami_id,
            runtime,
            values(spec or colors.spec(), live=live, test=test, weights=weights),
            detail=False,  # recorded, not shown: the gate needs no attributes
        )
        try:
            gate(plan, allow_replace=False)
        except BakerError:
            terraform.discard(plan)
            raise
        terraform.apply(plan)
        now = Colors.from_outputs(terraform.outputs())
        if now is None:
            raise BakerError("terraform applied no blue_green output")
        return now

    def traffic_first(self, release: Release, result: dict[str, Any]) -> bool:
        """``baker rollback`` while the previous color still runs the release: users move back before
        Terraform starts (baker/deploy/traffic.py); ``roll`` finds the color ready and records it."""
        if release.kind != "rollback" or not traffic.back(self.ctx, release):
            return False
        result["traffic_first"] = True
        return True

    # -- back

    def roll_back(
        self, back: Release, failed: Release, allow_replace: bool, health_timeout: int
    ) -> tuple[Rollout | None, str | None]:
        """After a failed blue/green deploy: the weights back to the color that was live (it kept
        its capacity), the failed color scaled to zero; nothing is launched. When the previous
        color cannot take the traffic as it is, a normal blue/green deploy of ``back``."""
        before = self.before
        failed_color = failed.color
        if before is None or failed_color is None:
            return self.roll(back, False, health_timeout, {})
        prev = other(failed_color)
        fleet = before.fleets[prev]
        if fleet.image_id != back.ami_id or fleet.capacity <= 0:
            log.warning("%s does not run %s at capacity: rolling back by a new deploy", prev, back.ami_id)
            return self.roll(back, False, health_timeout, {})
        back.color = prev
        self.by_weights = True
        self._record(back, fleet)
        self.ctx.records.intent(back)
        now = self.current() or before
        spec = now.spec()
        spec[failed_color] = {**spec[failed_color], "capacity": 0}
        self.weigh(
            now,
            step_weights(prev, 100),
            live=prev,
            test=prev,
            ami_id=fleet.image_id,
            runtime=fleet.runtime_env,
            spec=spec,
        )
        log.info("weights back on %s (%s); %s scaled to zero", prev, back.ami_id, failed_color)
        state = self.watch(fleet).look(back.ami_id)
        if not state.done:
            return state, f"{prev} is not all healthy after the weights came back: {state.live()}"
        return state, None

    def rollback_details(self) -> dict[str, Any]:
        return {"by_weights": self.by_weights}

    # -- retire

    def retire(self, *, force: bool = False) -> dict[str, Any]:
        """Scale the idle color to zero once ``deploy.keep_previous`` has passed since the live
        release got healthy (``force``: now). Under the deploy lock; launches nothing."""
        ctx = self.ctx
        with ctx.lock("retire"):
            colors = self.current()
            result: dict[str, Any] = {"env": ctx.env.name, "retired": None}
            if colors is None:
                result["reason"] = "no blue/green fleet yet"
                return result
            idle = colors.fleets[colors.idle]
            result.update({"live_color": colors.live, "idle_color": idle.color, "idle_ami_id": idle.image_id})
            if idle.capacity == 0:
                result["reason"] = f"{idle.color} has no capacity already"
                return result
            live = ctx.ledger.live()
            since = parse_iso(live.healthy_at or live.at) if live else None
            age = (utc_now() - since).total_seconds() if since else None
            keep = self.settings.keep_previous
            if not force and age is not None and age < keep:
                result["reason"] = (
                    f"{idle.color} is kept for a rollback by weights for {duration(keep - age)} more "
                    f"(deploy.keep_previous: {keep}s); --force retires it now"
                )
                result["kept_seconds"] = int(keep - age)
                return result
            spec = colors.spec()
            spec[idle.color] = {**spec[idle.color], "capacity": 0}
            live_fleet = colors.fleets[colors.live]
            self.weigh(
                colors,
                colors.weights,
                live=colors.live,
                test=colors.live,
                ami_id=live_fleet.image_id,
                runtime=live_fleet.runtime_env,
                spec=spec,
            )
            result.update({"retired": idle.color, "capacity_was": idle.capacity})
            log.info("%s (%s) scaled to zero; %s stays live", idle.color, idle.image_id, colors.live)
            return result
