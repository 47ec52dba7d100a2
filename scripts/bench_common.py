"""Helpers shared by the loopback benchmark scripts (bench_ab.py, bench_profile.py): the
environment, the workload specs, waiting for a target's address and the ringside-perf command."""
import os
import re
import tempfile
import time

DEFAULT_WORKLOADS = "randread:4k:1 randread:4k:32 randread:4k:128 randrw70:4k:32 randread:128k:8"


def env(name, default):
    return os.environ.get(name, default)


def run_config(prefix):
    """The settings every interleaved loopback run shares (DURATION, WARMUP, ROUNDS, TGT_CORE,
    PERF_CORE, MALLOC, NICE, PERF_ARGS) and a fresh work directory `prefix`-*."""
    return {
        "duration": float(env("DURATION", "5")),
        "warmup": float(env("WARMUP", "1")),
        "rounds": int(env("ROUNDS", "3")),
        "tgt_core": int(env("TGT_CORE", "0")),
        "perf_core": int(env("PERF_CORE", "1")),
        "malloc": env("MALLOC", "1GiB"),
        "nice": int(env("NICE", "0") or 0),
        "perf_args": env("PERF_ARGS", "").split(),
        "work": tempfile.mkdtemp(prefix=prefix),
    }


def parse_workload(spec):
    """`randread:4k:32` or `randrw70:4k:32` -> dict."""
    kind, size, qd = spec.split(":")
    mix = None
    m = re.fullmatch(r"(randrw|rw)(\d+)", kind)
    if m:
        kind, mix = m.group(1), int(m.group(2))
    return {"name": spec, "workload": kind, "mix": mix, "io_size": size, "qd": int(qd)}


def workloads():
    """The workloads of $WORKLOADS (default: DEFAULT_WORKLOADS)."""
    return [parse_workload(w) for w in env("WORKLOADS", DEFAULT_WORKLOADS).split()]


def wait_for_port(who, proc, err, timeout=30.0):
    """The port ringside-tgt (`proc`, its stderr in the open file `err`) reports it listens on;
    `None` when it does not within `timeout` s. Exits the script (`who: ... exited: its stderr`)
    when the target exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        err.seek(0)
        m = re.search(r"listening on tcp \S+:(\d+)", err.read())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            err.seek(0)
            raise SystemExit(f"{who} exited: {err.read().strip()}")
        time.sleep(0.05)
    return None


def perf_cmd(perf, port, nqn, wl, core, duration, warmup):
    """The ringside-perf command for workload `wl` against 127.0.0.1:`port`, JSON report."""
    trid = f"trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:{port} subnqn:{nqn}"
    cmd = [perf, "-r", trid, "-q", str(wl["qd"]), "-o", wl["io_size"], "-w", wl["workload"],
           "-t", str(duration), "--warmup", str(warmup), "--cores", str(core), "--json"]
    if wl["mix"] is not None:
        cmd += ["-M", str(wl["mix"])]
    # PERF_ARGS: extra ringside-perf flags for every run, e.g. "--sq-flow-control" to connect the
    # way the Linux and SPDK hosts do by default (SQ flow control kept on).
    return cmd + env("PERF_ARGS", "").split()
