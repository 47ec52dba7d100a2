#!/usr/bin/env python3
"""Generates ringside's Grafana dashboards (node-overview.json, fleet.json) from one description.

Every query uses series from exporter/src/catalog.rs only; `cargo test -p tests --test
prometheus_scrape` checks that (names against the catalog, queries against a real Prometheus).
Run `python3 dashboards/generate.py` after changing this file and commit the JSON it writes
(`python3 dashboards/generate.py DIR` writes into DIR instead).
Standard library only.
"""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
HERE = os.path.dirname(os.path.abspath(__file__))

# `target` is empty (absent) on the series of a `ringside serve` following one target, and the
# instance name with `serve --all`: "$target|" selects both.
I = 'instance=~"$instance", target=~"$target|"'
IR = 'instance=~"$instance", target=~"$target|", reactor=~"$reactor"'
RI = "$__rate_interval"


def target(expr, legend="", ref="A", table=False, heatmap=False):
    t = {"refId": ref, "datasource": DS, "expr": expr, "editorMode": "code"}
    if table:
        t.update({"format": "table", "instant": True, "range": False})
    else:
        t.update({"legendFormat": legend, "range": True, "instant": False})
        if heatmap:
            t["format"] = "heatmap"
    return t


def targets(*pairs, **kw):
    return [target(e, l, chr(ord("A") + i), **kw) for i, (e, l) in enumerate(pairs)]


def timeseries(title, desc, tgts, unit="short", w=12, h=8, maxv=None, stack=False):
    defaults = {
        "unit": unit,
        "min": 0,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
    }
    if maxv is not None:
        defaults["max"] = maxv
    return {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": tgts,
        "_w": w,
        "_h": h,
    }


def stat(title, desc, expr, unit="short", w=4, h=4, thresholds=None):
    steps = thresholds or [{"color": "green", "value": None}]
    return {
        "type": "stat",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
            "justifyMode": "auto",
            "orientation": "auto",
        },
        "targets": [target(expr)],
        "_w": w,
        "_h": h,
    }


def table(title, desc, expr, hide=(), w=12, h=8):
    exclude = {"Time": True, "__name__": True}
    for k in hide:
        exclude[k] = True
    return {
        "type": "table",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm"},
        "transformations": [{"id": "organize", "options": {"excludeByName": exclude}}],
        "targets": [target(expr, table=True)],
        "_w": w,
        "_h": h,
    }


def bargauge(title, desc, expr, legend, w=12, h=8):
    return {
        "type": "bargauge",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {
                "min": 0,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                },
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
        "targets": [target(expr, legend)],
        "_w": w,
        "_h": h,
    }


def heatmap(title, desc, expr, w=24, h=9):
    return {
        "type": "heatmap",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": {"custom": {"scaleDistribution": {"type": "linear"}}}, "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5},
            "yAxis": {"unit": "s", "axisPlacement": "left"},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"mode": "single", "yHistogram": True},
            "legend": {"show": True},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
        },
        "targets": [target(expr, "{{le}}", heatmap=True)],
        "_w": w,
        "_h": h,
    }


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_w": 24, "_h": 1}


def layout(panels):
    """Assigns ids and grid positions: left to right, wrapping at 24 columns."""
    x = y = row_h = 0
    out = []
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_w"), p.pop("_h")
        if x + w > 24 or p["type"] == "row":
            y += row_h
            x = row_h = 0
        p["id"] = i
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x += w
        row_h = max(row_h, h)
        if p["type"] == "row":
            y += h
            x = row_h = 0
        out.append(p)
    return out


def variable_ds():
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "includeAll": False,
        "multi": False,
    }


def variable_query(name, label, query, multi, include_all):
    v = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 3,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "hide": 0,
        "regex": "",
        "options": [],
    }
    if include_all:
        v["allValue"] = ".*"
    return v


def dashboard(uid, title, desc, variables, panels):
    return {
        "annotations": {"list": []},
        "description": desc,
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "uid": uid,
        "title": title,
        "tags": ["ringside", "nvme-of"],
        "timezone": "",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "timepicker": {},
        "links": [
            {
                "title": "ringside dashboards",
                "type": "dashboards",
                "tags": ["ringside"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": variables},
        "panels": layout(panels),
    }


def node_overview():
    lat = f"ringside_reactor_latency_seconds_bucket{{{IR}}}"
    panels = [
        row("Overview"),
        stat("IOPS", "I/O completions per second over all reactors.",
             f"sum(rate(ringside_reactor_completions_total{{{I}}}[{RI}]))", "iops"),
        stat("Throughput", "Bytes per second moved by I/O commands (read + write).",
             f"sum(rate(ringside_reactor_io_bytes_total{{{I}}}[{RI}]))", "Bps"),
        stat("p99 latency", "99th percentile of I/O latency (capsule received to response sent).",
             f"histogram_quantile(0.99, sum by (le) (rate(ringside_reactor_latency_seconds_bucket{{{I}}}[{RI}])))", "s"),
        stat("Busiest reactor", "Highest busy ratio among the reactors in the latest window.",
             f"max(ringside_reactor_busy_ratio{{{I}}})", "percentunit",
             thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 0.8},
                         {"color": "red", "value": 0.95}]),
        stat("Active findings", "Subjects with a raised finding, all kinds.",
             f"sum(ringside_finding_active_subjects{{{I}}})", "short",
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        stat("Targets up", "Targets attached and read (ringside_target_up); a gone target counts 0 and serves nothing else.",
             f"sum(ringside_target_up{{{I}}})", "short"),
        stat("Snapshot age", "Time since the exporter last got a snapshot from the agent.",
             f"max(ringside_exporter_snapshot_age_seconds{{{I}}})", "s",
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 5}]),

        row("Reactors"),
        timeseries("IOPS per reactor", "rate() of completions per reactor (read + write + other).",
                   targets((f"sum by (reactor, core) (rate(ringside_reactor_completions_total{{{IR}}}[{RI}]))",
                            "reactor {{reactor}} (core {{core}})")), "iops"),
        timeseries("Busy ratio", "Busy-poll ns / (busy + idle ns) per reactor in the agent's latest window.",
                   targets((f"ringside_reactor_busy_ratio{{{IR}}}", "reactor {{reactor}}")),
                   "percentunit", maxv=1),
        timeseries("IOPS by op", "Completions per second by op class.",
                   targets((f"sum by (op) (rate(ringside_reactor_completions_total{{{IR}}}[{RI}]))", "{{op}}")),
                   "iops", w=8, stack=True),
        timeseries("Busy time per I/O", "Busy-poll time per completed I/O: 1/x is the reactor's IOPS capacity.",
                   targets((f"ringside_reactor_busy_time_per_io_seconds{{{IR}}}", "reactor {{reactor}}")),
                   "s", w=8),
        timeseries("Polls per second", "Poll loop iterations per second.",
                   targets((f"rate(ringside_reactor_polls_total{{{IR}}}[{RI}])", "reactor {{reactor}}")),
                   "short", w=8),
        timeseries("Scheduling", "Shares of the window: on CPU, waiting in the run queue, preempted, in interrupts "
                   "(procfs and kernel probes; empty without them).",
                   targets((f"ringside_reactor_cpu_ratio{{{IR}}}", "on cpu r{{reactor}}"),
                           (f"ringside_reactor_runqueue_wait_ratio{{{IR}}}", "run queue r{{reactor}}"),
                           (f"ringside_reactor_preempted_ratio{{{IR}}}", "preempted r{{reactor}}"),
                           (f"ringside_reactor_irq_ratio{{{IR}}}", "irq r{{reactor}}")),
                   "percentunit", w=8, maxv=1),
        timeseries("Kernel events", "Per second: involuntary switches, migrations, preemptions, syscalls of the reactor threads.",
                   targets((f"rate(ringside_reactor_involuntary_switches_total{{{IR}}}[{RI}])", "invol. switches r{{reactor}}"),
                           (f"rate(ringside_reactor_migrations_total{{{IR}}}[{RI}])", "migrations r{{reactor}}"),
                           (f"rate(ringside_reactor_preemptions_total{{{IR}}}[{RI}])", "preemptions r{{reactor}}"),
                           (f"rate(ringside_reactor_syscalls_total{{{IR}}}[{RI}])", "syscalls r{{reactor}}")),
                   "short", w=8),
        timeseries("Errors and buffer waits", "Per second.",
                   targets((f"rate(ringside_reactor_errors_total{{{IR}}}[{RI}])", "errors r{{reactor}}"),
                           (f"rate(ringside_reactor_buffer_waits_total{{{IR}}}[{RI}])", "buffer waits r{{reactor}}")),
                   "short", w=8),
        timeseries("Backend", "Requests in flight at the backend, its high-water mark, and submissions per second.",
                   targets((f"ringside_reactor_backend_inflight_requests{{{IR}}}", "in flight r{{reactor}}"),
                           (f"ringside_reactor_backend_inflight_max_requests{{{IR}}}", "high water r{{reactor}}"),
                           (f"rate(ringside_reactor_backend_submissions_total{{{IR}}}[{RI}])", "submits/s r{{reactor}}")),
                   "short", w=12),
        timeseries("Reactor state", "Active qpairs and stalled flag per reactor.",
                   targets((f"ringside_reactor_active_qpairs{{{IR}}}", "active qpairs r{{reactor}}"),
                           (f"ringside_reactor_stalled{{{IR}}}", "stalled r{{reactor}}")),
                   "short", w=12),

        row("Qpairs"),
        timeseries("Mean outstanding per qpair", "Little's law: time-weighted requests in flight per qpair in the latest window.",
                   targets((f"ringside_qpair_mean_outstanding_requests{{{IR}}}", "qpair {{reactor}}.{{qpair}}")),
                   "short"),
        timeseries("Outstanding vs queue size", "Requests outstanding at window end, the high-water mark, and the granted queue size.",
                   targets((f"ringside_qpair_outstanding_requests{{{IR}}}", "outstanding {{reactor}}.{{qpair}}"),
                           (f"ringside_qpair_outstanding_max_requests{{{IR}}}", "high water {{reactor}}.{{qpair}}"),
                           (f"ringside_qpair_queue_size_requests{{{IR}}}", "queue size {{reactor}}.{{qpair}}")),
                   "short"),
        timeseries("IOPS per qpair (top 10)", "The ten busiest qpairs.",
                   targets((f"topk(10, rate(ringside_qpair_completions_total{{{IR}}}[{RI}]))", "qpair {{reactor}}.{{qpair}}")),
                   "iops", w=8),
        timeseries("Throughput per qpair (top 10)", "Bytes per second, the ten busiest qpairs.",
                   targets((f"topk(10, rate(ringside_qpair_io_bytes_total{{{IR}}}[{RI}]))", "qpair {{reactor}}.{{qpair}}")),
                   "Bps", w=8),
        timeseries("p99 latency per qpair (top 10)", "Slowest qpairs by p99 latency, and their error rate.",
                   targets((f"topk(10, histogram_quantile(0.99, sum by (reactor, qpair, le) (rate(ringside_qpair_latency_seconds_bucket{{{IR}}}[{RI}]))))",
                            "p99 {{reactor}}.{{qpair}}"),
                           (f"sum by (reactor, qpair) (rate(ringside_qpair_errors_total{{{IR}}}[{RI}])) > 0", "errors/s {{reactor}}.{{qpair}}")),
                   "s", w=8),
        timeseries("IOPS per host", "Completions per second by the host the qpairs serve (host NQN, or address when the NQN is empty; at most 16 hosts, the rest under other).",
                   targets((f"sum by (host) (rate(ringside_qpair_completions_total{{{IR}}}[{RI}]))", "{{host}}")),
                   "iops", w=12),
        timeseries("p99 latency per host", "Which host is slow: p99 of its qpairs' I/O latency.",
                   targets((f"histogram_quantile(0.99, sum by (host, le) (rate(ringside_qpair_latency_seconds_bucket{{{IR}}}[{RI}])))", "p99 {{host}}")),
                   "s", w=12),

        row("Latency"),
        heatmap("Latency heatmap", "I/O latency distribution per interval (histogram buckets, 1 us to 1 s).",
                f"sum by (le) (increase({lat}[{RI}]))"),
        timeseries("Latency percentiles per reactor", "p50 and p99 of I/O latency.",
                   targets((f"histogram_quantile(0.5, sum by (reactor, le) (rate({lat}[{RI}])))", "p50 r{{reactor}}"),
                           (f"histogram_quantile(0.99, sum by (reactor, le) (rate({lat}[{RI}])))", "p99 r{{reactor}}")),
                   "s", w=8),
        timeseries("Mean latency", "Sum of latencies / count over the interval.",
                   targets((f"sum(rate(ringside_reactor_latency_seconds_sum{{{IR}}}[{RI}])) / sum(rate(ringside_reactor_latency_seconds_count{{{IR}}}[{RI}]))", "mean")),
                   "s", w=8),
        timeseries("Stage latency p99", "Per request stage (to_backend, backend, to_wire…), p99 over all reactors.",
                   targets((f"histogram_quantile(0.99, sum by (stage, le) (rate(ringside_reactor_stage_latency_seconds_bucket{{{IR}}}[{RI}])))", "{{stage}}")),
                   "s", w=8),

        row("Network, devices, memory"),
        timeseries("Link utilisation", "max(rx, tx) / min(link speed, shaping rate); empty when the capacity is unknown (lo).",
                   targets((f"ringside_netdev_utilisation_ratio{{{I}}}", "{{netdev}}")), "percentunit", w=8, maxv=1),
        timeseries("Netdev throughput", "Bytes per second by interface and direction, with the capacity.",
                   targets((f"sum by (netdev, direction) (rate(ringside_netdev_bytes_total{{{I}}}[{RI}]))", "{{netdev}} {{direction}}"),
                           (f"ringside_netdev_capacity_bytes{{{I}}}", "{{netdev}} capacity")),
                   "Bps", w=8),
        timeseries("Packets, drops, retransmits", "Per second; qdisc backlog in bytes on the right.",
                   targets((f"sum by (netdev, direction) (rate(ringside_netdev_packets_total{{{I}}}[{RI}]))", "{{netdev}} {{direction}} pkts"),
                           (f"rate(ringside_netdev_drops_total{{{I}}}[{RI}])", "{{netdev}} drops"),
                           (f"rate(ringside_netdev_qdisc_drops_total{{{I}}}[{RI}])", "{{netdev}} qdisc drops"),
                           (f"rate(ringside_netdev_qdisc_overlimits_total{{{I}}}[{RI}])", "{{netdev}} qdisc overlimits"),
                           (f"ringside_netdev_qdisc_backlog_bytes{{{I}}}", "{{netdev}} backlog bytes"),
                           (f"rate(ringside_target_tcp_retransmits_total{{{I}}}[{RI}])", "tcp retransmits")),
                   "short", w=8),
        timeseries("Devices", "Block devices behind namespaces: IOPS and throughput.",
                   targets((f"rate(ringside_device_completions_total{{{I}}}[{RI}])", "{{device}} iops"),
                           (f"rate(ringside_device_io_bytes_total{{{I}}}[{RI}])", "{{device}} bytes/s")),
                   "short", w=8),
        timeseries("Device load", "Utilisation, mean service time and requests in flight.",
                   targets((f"ringside_device_utilisation_ratio{{{I}}}", "{{device}} utilisation"),
                           (f"ringside_device_mean_service_time_seconds{{{I}}}", "{{device}} service time"),
                           (f"ringside_device_inflight_requests{{{I}}}", "{{device}} in flight")),
                   "short", w=8),
        timeseries("Memory by NUMA node", "Target memory (buffers, all mappings) per NUMA node.",
                   targets((f"ringside_memory_buffer_bytes{{{I}}}", "buffers node {{numa_node}}"),
                           (f"ringside_memory_resident_bytes{{{I}}}", "all node {{numa_node}}")),
                   "bytes", w=8),

        row("RDMA"),
        timeseries("RDMA completion batching", "Per reactor: work completions per nonempty CQ poll and work requests per doorbell (send chains and SRQ reposts). Near 1 means every poll and every doorbell carries one request: no batching.",
                   targets((f"ringside_rdma_completions_per_nonempty_poll{{{IR}}}", "reactor {{reactor}} completions/poll"),
                           (f"ringside_rdma_work_requests_per_doorbell{{{IR}}}", "reactor {{reactor}} WRs/doorbell")),
                   "short", w=6),
        timeseries("RDMA queues", "Send work requests posted and not completed (and their high water); receive buffers posted on the shared receive queue, its low water and size. A low water of 0: the SRQ ran dry and hosts saw receiver-not-ready.",
                   targets((f"ringside_rdma_send_pending_requests{{{IR}}}", "reactor {{reactor}} pending send WRs"),
                           (f"ringside_rdma_send_pending_max_requests{{{IR}}}", "reactor {{reactor}} pending high water"),
                           (f"ringside_rdma_srq_posted_requests{{{IR}}}", "reactor {{reactor}} SRQ posted"),
                           (f"ringside_rdma_srq_low_water_requests{{{IR}}}", "reactor {{reactor}} SRQ low water"),
                           (f"ringside_rdma_srq_size_requests{{{IR}}}", "reactor {{reactor}} SRQ size"),
                           (f"rate(ringside_rdma_srq_empty_total{{{IR}}}[{RI}])", "reactor {{reactor}} SRQ left empty/s")),
                   "short", w=6),
        timeseries("RDMA port throughput", "Bytes per second by RDMA port and direction from the port counters (hardware RoCE/IB traffic bypasses the netdev counters), with the port's data rate.",
                   targets((f"sum by (rdma_device, port, direction) (rate(ringside_rdma_port_bytes_total{{{I}}}[{RI}]))", "{{rdma_device}}/{{port}} {{direction}}"),
                           (f"ringside_rdma_port_capacity_bytes{{{I}}}", "{{rdma_device}}/{{port}} capacity")),
                   "Bps", w=6),
        timeseries("RDMA port utilisation and retransmits", "max(rx, tx) / data rate; retransmit-class events per second (sequence errors, NAKs, timeouts, RNR retries).",
                   targets((f"ringside_rdma_port_utilisation_ratio{{{I}}}", "{{rdma_device}}/{{port}} utilisation"),
                           (f"sum by (rdma_device, port) (rate(ringside_rdma_port_retransmit_events_total{{{I}}}[{RI}]))", "{{rdma_device}}/{{port}} retransmit events/s")),
                   "short", w=6),

        row("Findings and agent"),
        table("Active findings", "Findings raised now, with severity.",
              f"ringside_finding_active{{{I}}} == 1", hide=("Value", "job")),
        bargauge("Findings by kind", "Subjects with each kind of finding raised now.",
                 f"ringside_finding_active_subjects{{{I}}}", "{{kind}}"),
        table("Finding confidence", "Confidence of each raised finding.",
              f"ringside_finding_confidence_ratio{{{I}}}", hide=("job",), w=8),
        table("Recommendations", "Settings the recommender proposes to change (see /snapshot.json for the fragments).",
              f"ringside_recommendation_active{{{I}}} == 1", hide=("Value", "job"), w=8),
        timeseries("Findings raised", "Raises per kind over the interval.",
                   targets((f"sum by (kind) (increase(ringside_finding_raised_total{{{I}}}[{RI}]))", "{{kind}}")),
                   "short", w=8),
        table("Data sources", "Which of the agent's sources deliver (1) or are missing (0).",
              f"ringside_agent_capability_available{{{I}}}", hide=("job",), w=8),
        table("Target", "Instance, listeners and reactors.",
              f"ringside_target_listener_info{{{I}}}", hide=("Value", "job"), w=8),
        table("Reactor placement", "Reactor, core and NUMA node.",
              f"ringside_reactor_info{{{I}}}", hide=("Value", "job"), w=8),
        timeseries("Exporter", "HTTP requests per second by code, connections open, refused and dropped; windows and updates per second.",
                   targets((f"sum by (code) (rate(ringside_exporter_http_requests_total{{{I}}}[{RI}]))", "http {{code}}"),
                           (f"ringside_exporter_connections_open{{{I}}}", "open"),
                           (f"rate(ringside_exporter_connections_rejected_total{{{I}}}[{RI}])", "refused/s"),
                           (f"rate(ringside_exporter_connections_dropped_total{{{I}}}[{RI}])", "dropped/s"),
                           (f"rate(ringside_agent_windows_total{{{I}}}[{RI}])", "windows/s"),
                           (f"rate(ringside_exporter_updates_total{{{I}}}[{RI}])", "updates/s"),
                           (f"ringside_agent_window_length_seconds{{{I}}}", "window length s")),
                   "short", w=24),
    ]
    variables = [
        variable_ds(),
        variable_query("instance", "Instance", "label_values(ringside_target_info, instance)", False, False),
        variable_query("target", "Target", 'label_values(ringside_target_up{instance=~"$instance"}, target)', True, True),
        variable_query("reactor", "Reactor", 'label_values(ringside_reactor_info{instance=~"$instance"}, reactor)', True, True),
    ]
    return dashboard("ringside-node", "ringside / node overview",
                     "One ringside-tgt instance as its agent sees it: reactors, qpairs, latency, links, findings.",
                     variables, panels)


def fleet():
    panels = [
        row("Fleet"),
        stat("Instances", "Targets reporting.", f"count(ringside_target_info{{{I}}})", w=6),
        stat("Targets up", "Targets attached and read by their agents.",
             f"sum(ringside_target_up{{{I}}})", w=6,
             thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}]),
        stat("Targets down", "Targets an agent waits for or saw go (killed, exited, file truncated or replaced).",
             f"count(ringside_target_up{{{I}}} == 0) or vector(0)", w=6,
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        stat("Fleet IOPS", "All instances together.",
             f"sum(rate(ringside_reactor_completions_total{{{I}}}[{RI}]))", "iops", w=6),
        stat("Fleet throughput", "All instances together.",
             f"sum(rate(ringside_reactor_io_bytes_total{{{I}}}[{RI}]))", "Bps", w=6),
        stat("Findings", "Subjects with a raised finding, all instances.",
             f"sum(ringside_finding_active_subjects{{{I}}})", w=6,
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        table("Instances", "Instance name per scrape target.", f"ringside_target_info{{{I}}}",
              hide=("Value",), w=24, h=6),

        row("Per instance"),
        timeseries("IOPS per instance", "", targets(
            (f"sum by (instance) (rate(ringside_reactor_completions_total{{{I}}}[{RI}]))", "{{instance}}")), "iops"),
        timeseries("Throughput per instance", "", targets(
            (f"sum by (instance) (rate(ringside_reactor_io_bytes_total{{{I}}}[{RI}]))", "{{instance}}")), "Bps"),
        timeseries("p99 latency per instance", "", targets(
            (f"histogram_quantile(0.99, sum by (instance, le) (rate(ringside_reactor_latency_seconds_bucket{{{I}}}[{RI}])))",
             "{{instance}}")), "s"),
        timeseries("Busiest reactor per instance", "Highest busy ratio; a value near 1 means a saturated reactor.",
                   targets((f"max by (instance) (ringside_reactor_busy_ratio{{{I}}})", "{{instance}}")),
                   "percentunit", maxv=1),
        timeseries("Mean busy ratio by NUMA node", "Reactors grouped by the NUMA node of their core (join on ringside_reactor_info).",
                   targets((f"avg by (instance, numa_node) (ringside_reactor_busy_ratio{{{I}}} * on (instance, reactor) group_left (numa_node) ringside_reactor_info{{{I}}})",
                            "{{instance}} node {{numa_node}}")), "percentunit", maxv=1),
        timeseries("Outstanding per instance", "Little's-law requests in flight, summed over reactors.",
                   targets((f"sum by (instance) (ringside_reactor_mean_outstanding_requests{{{I}}})", "{{instance}}")), "short"),
        timeseries("Max link utilisation per instance", "Empty when no listener netdev has a known capacity.",
                   targets((f"max by (instance) (ringside_netdev_utilisation_ratio{{{I}}})", "{{instance}}")),
                   "percentunit", maxv=1),
        timeseries("Errors and stalls per instance", "Errors per second and stalled reactors.",
                   targets((f"sum by (instance) (rate(ringside_reactor_errors_total{{{I}}}[{RI}]))", "errors/s {{instance}}"),
                           (f"sum by (instance) (ringside_reactor_stalled{{{I}}})", "stalled {{instance}}")), "short"),
        table("Findings by instance and kind", "Raised findings per instance and kind.",
              f"sum by (instance, kind) (ringside_finding_active_subjects{{{I}}}) > 0", w=12),
        timeseries("Snapshot age per instance", "Seconds since each exporter's last snapshot: a stuck agent shows here.",
                   targets((f"ringside_exporter_snapshot_age_seconds{{{I}}}", "{{instance}}")), "s"),
    ]
    variables = [
        variable_ds(),
        variable_query("instance", "Instance", "label_values(ringside_target_info, instance)", True, True),
        variable_query("target", "Target", 'label_values(ringside_target_up{instance=~"$instance"}, target)', True, True),
    ]
    return dashboard("ringside-fleet", "ringside / fleet",
                     "Every ringside-tgt instance scraped: aggregates per instance and per NUMA node.",
                     variables, panels)


def main():
    # An output directory may be given (the tests regenerate into a temporary one and compare).
    out_dir = sys.argv[1] if len(sys.argv) > 1 else HERE
    for name, d in (("node-overview.json", node_overview()), ("fleet.json", fleet())):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(d, f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
