"""Where the users' traffic goes, set on the load balancer itself: the listener's weights.

ModifyListener takes effect at once. Terraform records the same weights afterwards (the next plan
shows nothing to change), so users never wait for a Terraform init or a state read. For a
``baker rollback`` to the previous blue/green color, what to set is found without Terraform at all:
the ledger knows each release's color and group, and a few Describe calls say the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from baker.aws import AWS
from baker.deploy.context import Context
from baker.errors import BakerError
from baker.ledger import Release

log = logging.getLogger("baker")


def set_weights(aws: AWS, listener_arn: str, groups: Mapping[str, str], weights: Mapping[str, int]) -> None:
    """The users' listener forwards to each color's target group (``groups``) by ``weights``."""
    aws.client("elbv2").modify_listener(
        ListenerArn=listener_arn,
        DefaultActions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": arn, "Weight": int(weights.get(color, 0))}
                        for color, arn in sorted(groups.items())
                    ],
                    "TargetGroupStickinessConfig": {"Enabled": False},
                },
            }
        ],
    )


@dataclass(frozen=True)
class Flip:
    """Users can go back to ``color`` now: its target group and the live one's, behind ``listener_arn``."""

    color: str
    listener_arn: str
    groups: dict[str, str]


def previous_color(ctx: Context, release: Release) -> Flip | None:
    """The flip back to the color that still runs ``release`` (a rollback's target), or None when
    that color may not take the users as it is: not the other color than the live one, another
    launch template version than the release had (its image or runtime changed since), less
    capacity than the live color, not every instance healthy on the AMI."""
    live, target = ctx.ledger.live(), ctx.ledger.healthy_on(str(release.ami_id))
    if live is None or target is None or not (live.asg_name and target.asg_name):
        return None
    if not (live.color and target.color) or live.color == target.color:
        return None
    found = {
        g["AutoScalingGroupName"]: g
        for g in ctx.aws.client("autoscaling")
        .describe_auto_scaling_groups(AutoScalingGroupNames=[live.asg_name, target.asg_name])
        .get("AutoScalingGroups", [])
    }
    now, was = found.get(live.asg_name), found.get(target.asg_name)
    if now is None or was is None or len(now["TargetGroupARNs"]) != 1 or len(was["TargetGroupARNs"]) != 1:
        return None
    version = str((was.get("LaunchTemplate") or {}).get("Version"))
    if target.launch_template_version and version != target.launch_template_version:
        log.info("traffic first: %s launches another version than release %s had", target.asg_name, target.id)
        return None
    if not 0 < now["DesiredCapacity"] <= was["DesiredCapacity"]:
        return None
    groups = {live.color: now["TargetGroupARNs"][0], target.color: was["TargetGroupARNs"][0]}
    if not ctx.watch(target.asg_name, groups[target.color]).look(str(release.ami_id)).done:
        return None
    elb = ctx.aws.client("elbv2")
    group = elb.describe_target_groups(TargetGroupArns=[groups[target.color]])["TargetGroups"][0]
    for lb in group.get("LoadBalancerArns", []):
        for listener in elb.describe_listeners(LoadBalancerArn=lb).get("Listeners", []):
            action = (listener.get("DefaultActions") or [{}])[0]
            weighed = {t["TargetGroupArn"] for t in action.get("ForwardConfig", {}).get("TargetGroups", [])}
            if weighed == set(groups.values()):  # the users' listener weighs both; the test one has one
                return Flip(color=target.color, listener_arn=listener["ListenerArn"], groups=groups)
    return None


def back(ctx: Context, release: Release) -> bool:
    """Move the users to the color that still runs ``release`` (a rollback's target) now, its
    intent in the ledger first; whether they were. Anything unexpected: False, and the usual way."""
    try:
        flip = previous_color(ctx, release)
        if flip is None:
            return False
        ctx.records.intent(release)
        set_weights(ctx.aws, flip.listener_arn, flip.groups, {flip.color: 100})
    except BakerError as exc:  # ModifyListener is all or nothing: the usual way sets the weights
        log.info("traffic first: %s; the usual way", exc.message)
        return False
    log.info("traffic: 100%% on %s (%s) again; Terraform records it next", flip.color, release.ami_id)
    return True
