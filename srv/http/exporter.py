"""Prometheus exporter (`/metrics` on `exporter.listen`): the whole server, built per scrape.

Every scrape asks the master for a fresh snapshot and builds the metrics from it with a custom
collector in a throw-away registry, so nothing is kept between scrapes: a worker that died
simply is not in the next snapshot (no stale series), and its cumulative counters are carried
by the master's `retired` table (no counter goes backwards, nothing is counted twice).

Series: SRS's (`srs_build_info`, `srs_cpu_percent`, `srs_memory`, `srs_send_bytes_total`,
`srs_receive_bytes_total`, `srs_streams`, `srs_clients`, `srs_clients_total`,
`srs_clients_errs_total`), and per stream, per forward destination, per worker, reloads,
connection rejections (reasons include security, signed_url, http_hook, ip_banned, ip_rate,
ip_connections), per-IP bans and SRS http_hooks calls (`srs_http_hook_calls_total{hook,outcome}`,
`srs_http_hook_failures_total{hook,reason}`, `srs_http_hook_duration_seconds{hook}`). Label
cardinality is bounded: per-stream and per-forward series stop at `MAX_STREAMS` streams (the
rest are summed in `srs_streams_unlisted`); reasons, hooks and results come from fixed code
paths. `label` and `tag` from the config go on `srs_build_info`, as in SRS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from srv import __version__
from srv.conf.model import ExporterConfig
from srv.http.procstat import ProcessSampler
from srv.http.stats import ServerView, StreamView
from srv.net.hooks import LATENCY_BUCKETS

MAX_STREAMS = 1000
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

CPU = ProcessSampler()  # the exporter's own CPU sampling state: an API call does not reset it

FORWARD_STATES = ("idle", "connecting", "connected", "publishing", "backoff", "stopped")


class SnapshotCollector(Collector):
    def __init__(self, view: ServerView, config: ExporterConfig) -> None:
        self.view = view
        self.config = config

    def collect(self) -> Iterator[Metric]:
        v, m = self.view, self.view.master
        major, minor, revision = (__version__.split(".") + ["0", "0"])[:3]
        build = GaugeMetricFamily("srs_build_info", "Build and configuration of this server.",
                                  labels=["version", "major", "minor", "revision", "label", "tag"])
        build.add_metric([__version__, major, minor, revision, self.config.label, self.config.tag], 1)
        yield build
        yield from self.process_metrics()
        yield CounterMetricFamily("srs_send_bytes", "Bytes sent to clients.", value=v.counter("send_bytes"))
        yield CounterMetricFamily("srs_receive_bytes", "Bytes received from clients.",
                                  value=v.counter("recv_bytes"))
        yield GaugeMetricFamily("srs_streams", "Streams being published.",
                                value=sum(1 for s in v.streams.values() if s.publishing))
        yield GaugeMetricFamily("srs_clients", "Clients connected now.", value=v.client_count)
        yield CounterMetricFamily("srs_clients", "Clients accepted.", value=v.counter("clients_total"))
        yield CounterMetricFamily("srs_clients_errs", "Clients closed because of an error.",
                                  value=v.counter("clients_errs_total"))
        by_type = GaugeMetricFamily("srs_clients_by_type", "Clients connected now, by type.", labels=["type"])
        for kind, count in sorted(v.clients_by_type.items()):
            by_type.add_metric([kind], count)
        yield by_type
        rejected = CounterMetricFamily("srs_connections_rejected", "Connections refused, by reason.",
                                       labels=["reason"])
        for reason, n in sorted(v.counters_with_prefix("rejected:").items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield CounterMetricFamily("srs_ip_bans", "Client IPs banned after refused auths (per_ip ban_after).",
                                  value=v.counter("ip_bans"))
        yield CounterMetricFamily("srs_worker_restarts", "Workers respawned after they died.",
                                  value=m.get("worker_restarts", 0))
        reloads = CounterMetricFamily("srs_reloads", "Config reloads, by result.", labels=["result"])
        reloads.add_metric(["ok"], m.get("reloads_ok", 0))
        reloads.add_metric(["failed"], m.get("reloads_failed", 0))
        yield reloads
        yield GaugeMetricFamily("srs_workers", "Worker processes alive.", value=len(m.get("workers", [])))
        yield GaugeMetricFamily("srs_ready", "1 when every worker accepts and the server is not stopping.",
                                value=1 if m.get("ready") else 0)
        yield from self.stream_metrics()
        yield from self.hook_metrics()

    def hook_metrics(self) -> Iterator[Metric]:
        """SRS http_hooks, per hook: calls by outcome (accepted, refused, failed), failures by
        kind (timeout, too_large, network, closed), and the latency histogram. The workers count
        them (srv.net.hooks.count_call); hooks and kinds come from fixed code paths."""
        v = self.view
        calls = CounterMetricFamily("srs_http_hook_calls", "HTTP hook calls, by hook and outcome.",
                                    labels=["hook", "outcome"])
        for key, n in sorted(v.counters_with_prefix("hook_calls:").items()):
            calls.add_metric(key.split(":", 1), n)
        failures = CounterMetricFamily("srs_http_hook_failures", "HTTP hook calls that got no usable answer, "
                                       "by hook and reason.", labels=["hook", "reason"])
        for key, n in sorted(v.counters_with_prefix("hook_failures:").items()):
            failures.add_metric(key.split(":", 1), n)
        latency = HistogramMetricFamily("srs_http_hook_duration_seconds", "HTTP hook call latency, by hook.",
                                        labels=["hook"])
        per_bucket = v.counters_with_prefix("hook_le:")
        for hook, total_ms in sorted(v.counters_with_prefix("hook_ms:").items()):
            buckets, seen = [], 0.0
            for le in [f"{b:g}" for b in LATENCY_BUCKETS] + ["+Inf"]:
                seen += per_bucket.get(f"{hook}:{le}", 0)
                buckets.append((le, seen))
            latency.add_metric([hook], buckets, sum_value=total_ms / 1000)
        yield from (calls, failures, latency)

    def process_metrics(self) -> Iterator[Metric]:
        m = self.view.master
        cpu = GaugeMetricFamily("srs_cpu_percent", "CPU use of the server's processes, percent of one CPU.")
        mem = GaugeMetricFamily("srs_memory", "Resident memory of the server's processes, bytes.")
        pids = [("master", int(m["pid"]))] if m.get("pid") else []
        pids += [(str(w["slot"]), int(w["pid"])) for w in m.get("workers", [])]
        wcpu = GaugeMetricFamily("srs_process_cpu_percent", "CPU use by process.", labels=["process"])
        wmem = GaugeMetricFamily("srs_process_memory", "Resident memory by process, bytes.", labels=["process"])
        total_cpu = total_mem = 0.0
        for name, pid in pids:
            fig = CPU.figures(pid)
            total_cpu += fig["cpu_percent"]
            total_mem += fig["rss"]
            wcpu.add_metric([name], fig["cpu_percent"])
            wmem.add_metric([name], fig["rss"])
        CPU.forget({pid for _, pid in pids})
        cpu.add_metric([], total_cpu)
        mem.add_metric([], total_mem)
        yield from (cpu, mem, wcpu, wmem)

    def stream_metrics(self) -> Iterator[Metric]:
        labels = ["vhost", "app", "stream"]
        pub = GaugeMetricFamily("srs_stream_publishers", "Publishers of the stream (0 or 1).", labels=labels)
        players = GaugeMetricFamily("srs_stream_players", "Players of the stream now.", labels=labels)
        recv = CounterMetricFamily("srs_stream_receive_bytes", "Media bytes received from the publisher.",
                                   labels=labels)
        send = CounterMetricFamily("srs_stream_send_bytes", "Bytes sent to the stream's current players.",
                                   labels=labels)
        frames = CounterMetricFamily("srs_stream_frames", "Video frames received.", labels=labels)
        dropped = CounterMetricFamily("srs_stream_dropped", "Packets skipped for slow players.", labels=labels)
        hls_req = CounterMetricFamily("srs_stream_hls_requests", "HLS requests answered (playlists, segments).",
                                      labels=labels)
        hls_bytes = CounterMetricFamily("srs_stream_hls_send_bytes", "Body bytes of the HLS answers.", labels=labels)
        flabels = labels + ["destination"]
        f_up = GaugeMetricFamily("srs_forward_up", "1 while the forward destination is connected.", labels=flabels)
        f_state = GaugeMetricFamily("srs_forward_state", "Forward state (1 for the current one).",
                                    labels=flabels + ["state"])
        f_sent = CounterMetricFamily("srs_forward_messages_sent", "Messages sent to the destination.",
                                     labels=flabels)
        f_drop = CounterMetricFamily("srs_forward_messages_dropped", "Messages dropped for the destination.",
                                     labels=flabels)
        f_bytes = CounterMetricFamily("srs_forward_sent_bytes", "Bytes sent to the destination.", labels=flabels)
        f_rec = CounterMetricFamily("srs_forward_reconnects", "Reconnections to the destination.",
                                    labels=flabels)
        e_state = GaugeMetricFamily("srs_edge_state", "An edge's pull from an origin (1 for the current "
                                    "origin and state: connecting, pulling, backoff).",
                                    labels=labels + ["origin", "state"])
        e_switch = CounterMetricFamily("srs_edge_switches", "Origin failovers of an edge pull that was playing.",
                                       labels=labels)
        e_recon = CounterMetricFamily("srs_edge_reconnects", "Attempts of an edge pull after its first.",
                                      labels=labels)
        streams = sorted(self.view.streams.values(), key=lambda s: s.key)
        for s in streams[:MAX_STREAMS]:
            lv = [s.vhost, s.app, s.name]
            pub.add_metric(lv, 1 if s.publishing else 0)
            players.add_metric(lv, s.players)
            recv.add_metric(lv, s.recv_bytes)
            send.add_metric(lv, s.send_bytes)
            frames.add_metric(lv, s.frames)
            dropped.add_metric(lv, s.dropped)
            hls_req.add_metric(lv, s.hls_requests)
            hls_bytes.add_metric(lv, s.hls_bytes)
            if s.edge:
                e_state.add_metric(lv + [str(s.edge.get("origin", "")), str(s.edge.get("state", ""))], 1)
                e_switch.add_metric(lv, _num(s.edge, "switches"))
                e_recon.add_metric(lv, _num(s.edge, "reconnects"))
            for f in s.forwards:
                fl = lv + [str(f.get("destination", ""))]
                state = str(f.get("state", "unknown"))
                f_up.add_metric(fl, 1 if state in ("connected", "publishing") else 0)
                f_state.add_metric(fl + [state if state in FORWARD_STATES else "unknown"], 1)
                f_sent.add_metric(fl, _num(f, "messages_sent"))
                f_drop.add_metric(fl, _num(f, "messages_dropped"))
                f_bytes.add_metric(fl, _num(f, "bytes_sent"))
                f_rec.add_metric(fl, _num(f, "reconnects"))
        yield from (pub, players, recv, send, frames, dropped, hls_req, hls_bytes)
        yield from (f_up, f_state, f_sent, f_drop, f_bytes, f_rec, e_state, e_switch, e_recon)
        yield from self.hls_metrics(streams[:MAX_STREAMS])
        yield GaugeMetricFamily("srs_streams_unlisted", "Streams left out of per-stream series.",
                                value=max(0, len(streams) - MAX_STREAMS))


    @staticmethod
    def hls_metrics(streams: list[StreamView]) -> Iterator[Metric]:
        """The HLS writer of each stream written here (srv/app/hls.py figures)."""
        labels = ["vhost", "app", "stream"]
        segments = CounterMetricFamily("srs_hls_segments", "HLS segments written.", labels=labels)
        durations = HistogramMetricFamily("srs_hls_segment_duration_seconds", "HLS segment durations.",
                                          labels=labels)
        gop = GaugeMetricFamily("srs_hls_gop_seconds", "Seconds between the stream's last two keyframes.",
                                labels=labels)
        long_gop = GaugeMetricFamily("srs_hls_long_gop", "1 when the GOP is longer than hls_fragment.",
                                     labels=labels)
        errors = CounterMetricFamily("srs_hls_errors", "HLS write errors (hls_on_error).", labels=labels)
        for s in streams:
            h = s.hls
            if "segments" not in h:
                continue
            lv = [s.vhost, s.app, s.name]
            segments.add_metric(lv, _num(h, "segments"))
            buckets, total = [], 0.0
            for bound, n in (h.get("duration_buckets") or {}).items():
                total += float(n)
                buckets.append((bound, total))
            durations.add_metric(lv, buckets, _num(h, "duration_sum"))
            gop.add_metric(lv, _num(h, "gop"))
            long_gop.add_metric(lv, 1 if h.get("long_gop") else 0)
            errors.add_metric(lv, _num(h, "errors"))
        yield from (segments, durations, gop, long_gop, errors)


def _num(d: dict[str, Any], key: str) -> float:
    try:
        return float(d.get(key) or 0)
    except (TypeError, ValueError):
        return 0.0


def render(snapshot: dict[str, Any], config: ExporterConfig) -> bytes:
    """The Prometheus text exposition of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(ServerView(snapshot), config))
    return generate_latest(registry)
