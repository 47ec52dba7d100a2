#!/usr/bin/env python3
"""Same-run A/B comparison of two builds of ringside over NVMe/TCP loopback.

Called by `scripts/bench-tcp.sh --baseline REV` (see its header for the environment it reads).
A is the working tree's build, B the baseline's. Every round runs each workload once on A and once on
B, alternating which goes first (AB, BA, AB, ...), so a drift in the machine's speed (this VM swings up
to 2x between periods) hits both sides alike. Each run starts its own target (one reactor core, malloc
namespace), runs ringside-perf on the other core, and stops the target, so the two busy-polling
reactors never share a core.

Two comparisons:
  target  A's ringside-tgt vs B's ringside-tgt, both driven by the same initiator (A's ringside-perf);
  perf    (PERF_AB=1) A's ringside-perf vs B's ringside-perf against the same target (A's).
A_TGT_ARGS / B_TGT_ARGS add flags to A's / B's target only. `scripts/bench-tcp.sh --trace-ab` passes
the same build as A and B with B_TGT_ARGS=--no-trace and AB_MODE=trace: the ratio is then IOPS with
tracing on (the default tracepoints) over IOPS with it off, and the summary adds the cost, 1 - ratio.
Prints, per workload, the per-round ratios A/B with their median and spread, and writes one JSON file
stamped with both revisions, the machine and every run's ringside-perf report.
"""
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys

from bench_common import env, perf_cmd, run_config, wait_for_port, workloads as env_workloads


class Target:
    def __init__(self, binary, core, malloc, nice, workdir, tag, extra=()):
        self.binary, self.core, self.malloc, self.nice = binary, core, malloc, nice
        self.extra = list(extra)
        self.workdir, self.tag = workdir, tag
        self.proc = None
        self.port = None

    def start(self):
        err_path = os.path.join(self.workdir, f"tgt-{self.tag}.err")
        self.err = open(err_path, "w+")
        cmd = [self.binary, "--listen", "127.0.0.1:0", "--malloc", self.malloc, "--cores", str(self.core),
               "--nqn", NQN, "--name", f"benchab-{os.getpid()}-{self.tag}",
               "--rpc-socket", os.path.join(self.workdir, f"rpc-{self.tag}.sock")] + self.extra
        if self.nice:
            cmd = ["nice", "-n", str(self.nice)] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.err)
        self.port = wait_for_port(f"bench-ab: {self.binary}", self.proc, self.err)
        if self.port is not None:
            return
        self.stop()
        sys.exit(f"bench-ab: {self.binary} did not report its address within 30 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def run_perf(perf, port, wl, core, duration, warmup, nice):
    cmd = perf_cmd(perf, port, NQN, wl, core, duration, warmup)
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 120)
    if out.returncode != 0:
        sys.exit(f"bench-ab: ringside-perf failed ({out.returncode}): {out.stderr.strip()}")
    rep = json.loads(out.stdout)
    if rep["total"].get("errors", 0):
        sys.exit(f"bench-ab: ringside-perf reported {rep['total']['errors']} I/O errors on {wl['name']}")
    return rep


def one(variant_tgt, variant_perf, wl, cfg, tag, extra):
    # extra: A_TGT_ARGS or B_TGT_ARGS, flags for that side's target only (e.g. "--c2h-success
    # always", which B may not know; "--no-trace" for the tracing A/B, where A and B are one build).
    t = Target(variant_tgt, cfg["tgt_core"], cfg["malloc"], cfg["nice"], cfg["work"], tag, extra)
    t.start()
    try:
        return run_perf(variant_perf, t.port, wl, cfg["perf_core"], cfg["duration"], cfg["warmup"], cfg["nice"])
    finally:
        t.stop()


def summarize(ratios):
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": ratios}


def main():
    a_bin, b_bin, a_rev, b_rev, out_path = sys.argv[1:6]
    cfg = run_config("bench-ab-")
    cfg.update({
        "a_tgt_args": env("A_TGT_ARGS", "").split(),
        "b_tgt_args": env("B_TGT_ARGS", "").split(),
        "mode": env("AB_MODE", "revisions"),
    })
    tgt_args = {"A": cfg["a_tgt_args"], "B": cfg["b_tgt_args"]}
    workloads = env_workloads()
    perf_ab = env("PERF_AB", "0") == "1"
    tgt = {"A": os.path.join(a_bin, "ringside-tgt"), "B": os.path.join(b_bin, "ringside-tgt")}
    perf = {"A": os.path.join(a_bin, "ringside-perf"), "B": os.path.join(b_bin, "ringside-perf")}
    runs = []
    for r in range(cfg["rounds"]):
        order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
        for wl in workloads:
            for v in order:
                print(f"bench-ab: round {r + 1}/{cfg['rounds']} {wl['name']} target {v}", file=sys.stderr)
                rep = one(tgt[v], perf["A"], wl, cfg, v, tgt_args[v])
                runs.append({"round": r, "workload": wl["name"], "compare": "target", "variant": v,
                             "iops": rep["total"]["iops"], "report": rep})
            if perf_ab:
                for v in order:
                    print(f"bench-ab: round {r + 1}/{cfg['rounds']} {wl['name']} perf {v}", file=sys.stderr)
                    rep = one(tgt["A"], perf[v], wl, cfg, "perf" + v, tgt_args["A"])
                    runs.append({"round": r, "workload": wl["name"], "compare": "perf", "variant": v,
                                 "iops": rep["total"]["iops"], "report": rep})
    results = []
    for compare in (["target", "perf"] if perf_ab else ["target"]):
        for wl in workloads:
            by = {(x["round"], x["variant"]): x for x in runs
                  if x["workload"] == wl["name"] and x["compare"] == compare}
            ratios = [by[(r, "A")]["iops"] / by[(r, "B")]["iops"] for r in range(cfg["rounds"])]
            results.append({
                "compare": compare, "workload": wl["name"],
                "iops_a_median": statistics.median(by[(r, "A")]["iops"] for r in range(cfg["rounds"])),
                "iops_b_median": statistics.median(by[(r, "B")]["iops"] for r in range(cfg["rounds"])),
                "ratio": summarize(ratios),
            })
    if cfg["mode"] == "trace":
        bench = ("nvme-tcp loopback tracing A/B: one build, A = tracing on (default tracepoints), "
                 "B = --no-trace; interleaved rounds; cost = 1 - A/B")
        for x in results:
            r = x["ratio"]
            # The cost of tracing per round; its spread is the ratio's, mirrored.
            x["trace_cost"] = {"median": 1 - r["median"], "min": 1 - r["max"], "max": 1 - r["min"]}
    else:
        bench = "nvme-tcp loopback A/B: A = working tree, B = baseline; interleaved rounds"
    doc = {
        "benchmark": bench,
        "a_rev": a_rev, "b_rev": b_rev,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "kernel": platform.release(), "loadavg_at_end": os.getloadavg()},
        "config": {k: v for k, v in cfg.items() if k != "work"},
        "results": results,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"A = {a_rev}, B = {b_rev}; {cfg['rounds']} interleaved rounds of {cfg['duration']:g} s; ratio = A/B")
    cost = cfg["mode"] == "trace"
    print(f"{'compare':<8} {'workload':<18} {'A IOPS':>10} {'B IOPS':>10} {'ratio':>7} {'min':>7} {'max':>7}"
          + (f" {'cost %':>7}" if cost else ""))
    for x in results:
        r = x["ratio"]
        print(f"{x['compare']:<8} {x['workload']:<18} {x['iops_a_median']:>10.0f} {x['iops_b_median']:>10.0f} "
              f"{r['median']:>7.3f} {r['min']:>7.3f} {r['max']:>7.3f}"
              + (f" {100 * x['trace_cost']['median']:>7.2f}" if cost else ""))
    print(f"written to {out_path}")


NQN = "nqn.2026-11.io.ringside:benchab"

if __name__ == "__main__":
    main()
