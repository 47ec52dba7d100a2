#!/usr/bin/env python3
"""ringside over NVMe/TCP loopback against the kernel sockets' own ceiling, same run.

Called by `scripts/bench-tcp.sh --ceiling` (which compiles scripts/socket-ceiling.c). Every round
runs, in alternating order, the socket probe and ringside (this tree's ringside-tgt driven by its
ringside-perf) on the same two cores for two shapes:
  qd1     4 KiB random reads at QD1 against the probe's ping-pong (72-byte request, 24-byte header +
          4 KiB reply from a random offset of a buffer the size of the namespace, both sides
          busy-polling): the round-trip rate no NVMe/TCP pair on these sockets can beat;
  stream  128 KiB random reads at QD8 against the probe's one-way stream of batches of 7 x
          (24-byte header + 128 KiB): the rate at which one core can push the bytes into loopback
          TCP, i.e. the ceiling of a target whose core the socket's own work saturates.
Prints per shape the ratio ringside / ceiling (median, min, max) and writes one JSON file with every
run. Environment: ROUNDS (3), DURATION (5), WARMUP (1), TGT_CORE (0), PERF_CORE (1), MALLOC (1GiB),
NICE, PERF_ARGS, A_TGT_ARGS (flags for the target).

Usage: bench_ceiling.py BIN_DIR PROBE OUT_JSON
"""
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

from bench_ab import NQN, Target, run_perf  # noqa: F401  (NQN documents the subsystem used)
from bench_common import env, parse_workload, run_config

SHAPES = {
    "qd1": (parse_workload("randread:4k:1"), ["qd1", "4096"], "round_trips_per_s"),
    "stream": (parse_workload("randread:128k:8"), ["stream", "131072", "7"], "messages_per_s"),
}


def mib(size):
    s = size.strip().lower()
    for suffix, mult in (("gib", 1024), ("mib", 1)):
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * mult)
    raise SystemExit(f"bench-ceiling: MALLOC={size!r}: use MiB or GiB")


def probe(path, args, cfg):
    cmd = [path] + args + [str(mib(cfg["malloc"])), str(cfg["duration"])]
    if cfg["nice"]:
        cmd = ["nice", "-n", str(cfg["nice"])] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg["duration"] + 120)
    if out.returncode != 0:
        sys.exit(f"bench-ceiling: {' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def ringside(bin_dir, wl, cfg):
    t = Target(os.path.join(bin_dir, "ringside-tgt"), cfg["tgt_core"], cfg["malloc"], cfg["nice"],
               cfg["work"], "ceiling", env("A_TGT_ARGS", "").split())
    t.start()
    try:
        return run_perf(os.path.join(bin_dir, "ringside-perf"), t.port, wl, cfg["perf_core"],
                        cfg["duration"], cfg["warmup"], cfg["nice"])
    finally:
        t.stop()


def main():
    bin_dir, probe_path, out_path = sys.argv[1:4]
    cfg = run_config("bench-ceiling-")
    if (cfg["tgt_core"], cfg["perf_core"]) != (0, 1):
        sys.exit("bench-ceiling: the probe pins its sides to cores 0 and 1; keep TGT_CORE=0 PERF_CORE=1")
    runs = {name: [] for name in SHAPES}
    for r in range(cfg["rounds"]):
        for name, (wl, args, key) in SHAPES.items():
            order = ("probe", "ringside") if r % 2 == 0 else ("ringside", "probe")
            got = {}
            for side in order:
                print(f"bench-ceiling: round {r + 1}/{cfg['rounds']} {name} {side}", file=sys.stderr)
                if side == "probe":
                    got["probe"] = probe(probe_path, args, cfg)
                else:
                    got["ringside"] = ringside(bin_dir, wl, cfg)
            ceiling = got["probe"][key]
            iops = got["ringside"]["total"]["iops"]
            runs[name].append({"ceiling": ceiling, "iops": iops, "ratio": iops / ceiling,
                               "probe": got["probe"], "perf_report": got["ringside"]})
    summary = {}
    print(f"ringside / socket ceiling, {cfg['rounds']} interleaved rounds of {cfg['duration']:g} s")
    print(f"{'shape':8} {'ceiling/s':>10} {'ringside IOPS':>14} {'ratio':>7} {'min':>7} {'max':>7}")
    for name, rs in runs.items():
        ratios = [x["ratio"] for x in rs]
        summary[name] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                         "rounds": ratios,
                         "ceiling_median": statistics.median(x["ceiling"] for x in rs),
                         "iops_median": statistics.median(x["iops"] for x in rs)}
        s = summary[name]
        print(f"{name:8} {s['ceiling_median']:10.0f} {s['iops_median']:14.0f} {s['median']:7.3f} "
              f"{s['min']:7.3f} {s['max']:7.3f}")
    rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = {"tool": "bench_ceiling", "rev": rev, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "machine": {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count()},
           "config": cfg, "summary": summary, "runs": runs}
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"written to {out_path}")


if __name__ == "__main__":
    main()
