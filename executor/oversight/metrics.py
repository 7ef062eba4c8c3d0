"""Prometheus metrics of a running bot, in the text format ``prometheus-client`` writes.

Two kinds:

* latency histograms observed where the event happens (the order manager calls
  ``observe_tick_to_order`` as an order leaves and ``observe_decision_to_ack`` when the
  exchange's answer is in): process-wide, created unregistered and exposed by the registry
  of ``registry(sample)``;
* counters and gauges the bot already keeps (order manager and tracker counts, stream
  health, the request-weight budget), read at scrape time by ``BotCollector`` from a
  ``sample()`` callable, so counting them costs the trading path nothing.

Nothing secret is ever a label or a value: stream names, outcomes and counts only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["DECISION_TO_ACK", "TICK_TO_ORDER", "BotCollector", "MetricsSample", "observe_decision_to_ack",
           "observe_tick_to_order", "registry"]

_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
TICK_TO_ORDER = Histogram("bx_tick_to_order_seconds", "From the book update that triggered a decision to "
                          "the order request leaving the bot", buckets=_BUCKETS, registry=None)
DECISION_TO_ACK = Histogram("bx_decision_to_ack_seconds", "From the strategy's decision to the "
                            "exchange's answer accepting the order", buckets=_BUCKETS, registry=None)


def observe_tick_to_order(seconds: float) -> None:
    if seconds >= 0:
        TICK_TO_ORDER.observe(seconds)


def observe_decision_to_ack(seconds: float) -> None:
    if seconds >= 0:
        DECISION_TO_ACK.observe(seconds)


@dataclass
class MetricsSample:
    """What the bot reports at one scrape."""

    orders: Mapping[str, int] = field(default_factory=dict)  # outcome -> count (sent, rejected, ...)
    fills: int = 0
    stream_reconnects: Mapping[str, int] = field(default_factory=dict)  # stream name -> count
    stream_age_s: Mapping[str, float] = field(default_factory=dict)  # stream -> seconds since last message
    gap_fills: Mapping[str, int] = field(default_factory=dict)  # user stream -> gap fills run
    weight_used: Mapping[str, int] = field(default_factory=dict)  # window ("1m") -> request weight used
    weight_limit: Mapping[str, int] = field(default_factory=dict)
    paused: bool = False
    kill_switch: bool = False


class BotCollector(Collector):
    """Counters and gauges from ``sample()`` at every scrape."""

    def __init__(self, sample: Callable[[], MetricsSample]) -> None:
        self.sample = sample

    def collect(self) -> Iterator[Metric]:
        s = self.sample()
        orders = CounterMetricFamily("bx_orders", "Orders by outcome (sent, rejected, unknown, filled, ...)",
                                     labels=["outcome"])
        for outcome, n in sorted(s.orders.items()):
            orders.add_metric([outcome], n)
        yield orders
        yield CounterMetricFamily("bx_fills", "Fills of our orders in this run", value=s.fills)
        rec = CounterMetricFamily("bx_stream_reconnects", "Stream reconnects after an unplanned loss",
                                  labels=["stream"])
        for name, n in sorted(s.stream_reconnects.items()):
            rec.add_metric([name], n)
        yield rec
        age = GaugeMetricFamily("bx_stream_last_message_age_seconds", "Seconds since the stream's last "
                                "message (staleness)", labels=["stream"])
        for name, a in sorted(s.stream_age_s.items()):
            age.add_metric([name], a)
        yield age
        gaps = CounterMetricFamily("bx_gap_fills", "REST gap fills (reconciliations) run by a user stream",
                                   labels=["stream"])
        for name, n in sorted(s.gap_fills.items()):
            gaps.add_metric([name], n)
        yield gaps
        used = GaugeMetricFamily("bx_request_weight_used", "REST request weight used in the current window",
                                 labels=["window"])
        for name, n in sorted(s.weight_used.items()):
            used.add_metric([name], n)
        yield used
        limit = GaugeMetricFamily("bx_request_weight_limit", "REST request weight allowed per window",
                                  labels=["window"])
        for name, n in sorted(s.weight_limit.items()):
            limit.add_metric([name], n)
        yield limit
        yield GaugeMetricFamily("bx_paused", "1 while an operator has paused new orders", value=int(s.paused))
        yield GaugeMetricFamily("bx_kill_switch", "1 while the kill switch is engaged",
                                value=int(s.kill_switch))


class _Histograms(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from TICK_TO_ORDER.collect()
        yield from DECISION_TO_ACK.collect()


def registry(sample: Callable[[], MetricsSample]) -> CollectorRegistry:
    """A registry with the bot's counters (from ``sample``) and the latency histograms."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(BotCollector(sample))
    reg.register(_Histograms())
    return reg
