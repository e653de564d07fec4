"""The local load balancers' CloudWatch metrics, served by the emulator's CloudWatch (gap 15).

moto's CloudWatch holds only what PutMetricData put there: nothing counts the answers of a load
balancer, so a blue/green traffic step (baker.deploy.bluegreen, ``HTTPCode_Target_5XX_Count``) watched
an empty metric. Now the answers the local load balancers relay or make (baker.local.lb.Meter)
are metrics of namespace ``AWS/ApplicationELB``, with AWS's names and dimension sets:

- ``HTTPCode_Target_2XX_Count`` .. ``HTTPCode_Target_5XX_Count``: by ``LoadBalancer`` +
  ``TargetGroup``, and by ``LoadBalancer`` alone (the sum over its target groups);
- ``HTTPCode_ELB_5XX_Count`` and ``HTTPCode_ELB_502_Count``/``503``/``504``: by ``LoadBalancer``.

``LoadBalancer`` is ``app/<name>/<id>`` and ``TargetGroup`` is ``targetgroup/<name>/<id>``, the
ends of their ARNs. As on AWS, a count exists only for the seconds something was counted (no
zeros). Not emulated: the ``AvailabilityZone`` dimension sets, RequestCount, latencies.

A metric is also matched as AWS matches it: GetMetricStatistics returns the datapoints of the
exact dimension set asked for, where moto returned every datapoint whose dimensions include the
asked ones (so a query by ``LoadBalancer`` alone would add up every target group twice).
GetMetricData already matched exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

NAMESPACE = "AWS/ApplicationELB"
#: the provider class: moto finds it through __subclasses__(), which holds only weak references
_PROVIDER: type | None = None


def load_balancer_dimension(arn: str) -> str:
    """``arn:aws:elasticloadbalancing:R:A:loadbalancer/app/NAME/ID`` -> ``app/NAME/ID``."""
    return arn.split(":loadbalancer/", 1)[-1]


def target_group_dimension(arn: str) -> str:
    """``arn:aws:elasticloadbalancing:R:A:targetgroup/NAME/ID`` -> ``targetgroup/NAME/ID``."""
    return arn.split(":", 5)[-1]


def datapoints(
    rows: list[tuple[int, str, str, str, int]], account_id: str, region: str
) -> list[tuple[str, list[dict[str, str]], datetime, int]]:
    """(metric, dimensions, naive UTC second, count) of one account and region (pure).

    ``rows`` as ``Meter.rows()`` gives them; a target's answers are counted by load balancer and
    target group, and by load balancer alone.
    """
    sums: dict[tuple[str, tuple[tuple[str, str], ...], int], int] = {}
    for second, lb_arn, tg_arn, metric, count in rows:
        parts = lb_arn.split(":")
        if len(parts) < 6 or parts[3] != region or parts[4] != account_id:
            continue
        lb = ("LoadBalancer", load_balancer_dimension(lb_arn))
        sets = [(lb, ("TargetGroup", target_group_dimension(tg_arn))), (lb,)] if tg_arn else [(lb,)]
        for dims in sets:
            sums[(metric, dims, second)] = sums.get((metric, dims, second), 0) + count
    return [
        (
            metric,
            [{"Name": name, "Value": value} for name, value in dims],
            datetime.fromtimestamp(second, UTC).replace(tzinfo=None),  # moto's clock: naive UTC
            count,
        )
        for (metric, dims, second), count in sums.items()
    ]


def install() -> None:
    """Serve the load balancers' counts through moto's CloudWatch (idempotent)."""
    global _PROVIDER
    if _PROVIDER is not None:
        return
    from moto.cloudwatch.models import CloudWatchBackend, MetricDatum
    from moto.core.common_models import CloudWatchMetricProvider

    from baker.local.moto.state import BALANCERS

    class LoadBalancerMetrics(CloudWatchMetricProvider):
        """moto asks every CloudWatchMetricProvider subclass for its datapoints on each read."""

        @staticmethod
        def get_cloudwatch_metrics(account_id: str, region: str) -> list[Any]:
            rows = BALANCERS.meter.rows()
            return [
                MetricDatum(NAMESPACE, metric, float(count), dims, when, "Count")
                for metric, dims, when, count in datapoints(rows, account_id, region)
            ]

    original = CloudWatchBackend.get_metric_statistics

    def get_metric_statistics(self: Any, *args: Any, **kwargs: Any) -> Any:
        dimensions = kwargs["dimensions"] if "dimensions" in kwargs else args[6]
        asked = sorted((d["Name"], d.get("Value")) for d in dimensions or [])
        everything = self.get_all_metrics()
        exact = [md for md in everything if sorted((d.name, d.value) for d in md.dimensions) == asked]
        self.get_all_metrics = lambda: exact  # requests run one at a time (see api.wsgi)
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.get_all_metrics

    CloudWatchBackend.get_metric_statistics = get_metric_statistics  # type: ignore[method-assign]
    _PROVIDER = LoadBalancerMetrics
