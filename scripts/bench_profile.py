#!/usr/bin/env python3
"""Per-I/O profile of ringside over NVMe/TCP loopback, in load-independent units.

Called by `scripts/bench-tcp.sh --profile` (see its header). For each workload it starts a fresh
target (one reactor core, malloc namespace) and ringside-perf on the other core, and while the load
runs it counts, for the target process and for ringside-perf separately (each runs under `perf stat` for its whole life):
  - syscalls by kind, with `perf stat` on syscall tracepoints (a counter per event, no ptrace: the
    load keeps its shape, unlike `strace -c`), and receives that returned data (`ret > 0`);
  - with PROFILE_RECORD=1, where the reactor thread's CPU time goes (`perf record -e cpu-clock`,
    a software event: this VM has no hardware PMU), as the top symbols' shares.
Then it divides by the I/O commands of each side (the target's from `get_stats` at the end,
ringside-perf's report, run without warm-up) and adds the target's own counters (PDUs received and sent, from `get_stats`) and ringside-perf's (receives, empty receives,
sends, PDUs received). Counts per I/O do not depend on how busy the machine is (IOPS do), so this
runs on a shared machine; shares of CPU time are meaningful under load too.

Usage: bench_profile.py BIN_DIR OUT_JSON   (environment: WORKLOADS, DURATION, TGT_CORE,
PERF_CORE, MALLOC, TGT_ARGS, PROFILE_RECORD)
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from bench_common import env, perf_cmd, wait_for_port, workloads as env_workloads

NQN = "nqn.2026-11.io.ringside:benchprof"
SYSCALLS = ["recvfrom", "read", "readv", "writev", "write", "sendmsg", "recvmsg", "epoll_wait", "epoll_pwait",
            "io_uring_enter"]


def rpc(sock_path, method):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sock_path)
    s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method}).encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return json.loads(buf).get("result")


def reactor_counters(stats):
    """Sums what get_stats reports per reactor (names as of this revision; absent keys count 0)."""
    out = {"pdus_received": 0, "pdus_sent": 0, "polls": 0, "busy_polls": 0, "io_commands": 0,
           "busy_ns": 0, "idle_ns": 0}
    reactors = stats.get("reactors", []) if isinstance(stats, dict) else []
    for r in reactors:
        for k in out:
            v = r.get(k)
            if isinstance(v, (int, float)):
                out[k] += v
        cmds = r.get("commands") or {}
        out["io_commands"] += sum(v for k, v in cmds.items()
                                  if k not in ("admin", "fabrics") and isinstance(v, (int, float)))
    return out


def established(port):
    """Established TCP connections to the target's port."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def perf_stat_cmd(out_path):
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for s in SYSCALLS]
    cmd = ["perf", "stat", "-x", ",", "-o", out_path]
    for e in events:
        cmd += ["-e", e]
    # Receives that returned data.
    cmd += ["-e", "syscalls:sys_exit_recvfrom", "--filter", "ret > 0"]
    cmd += ["-e", "syscalls:sys_exit_read", "--filter", "ret > 0"]
    cmd += ["-e", "syscalls:sys_exit_readv", "--filter", "ret > 0"]
    return cmd


def parse_perf_stat(path):
    counts = {}
    seen = {}
    for line in open(path):
        f = line.strip().split(",")
        if len(f) < 3 or not f[0].strip().isdigit():
            continue
        ev = f[2]
        n = seen.get(ev, 0)
        seen[ev] = n + 1
        key = ev.split(":")[-1]
        if n == 1 or ev.startswith("syscalls:sys_exit"):
            key = key.replace("sys_exit_", "") + "_with_data"
        key = key.replace("sys_enter_", "").replace("sys_enter", "syscalls_total")
        counts[key] = counts.get(key, 0) + int(f[0])
    return counts


def top_symbols(perf_data, n=14):
    out = subprocess.run(["perf", "report", "-i", perf_data, "--stdio", "--no-children", "--sort", "sym",
                          "--percent-limit", "0.5"], capture_output=True, text=True)
    rows = []
    for line in out.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[([.k])\]\s+(.*)", line)
        if m:
            rows.append({"pct": float(m.group(1)), "space": "kernel" if m.group(2) == "k" else "user",
                         "symbol": m.group(3).strip()[:90]})
    return rows[:n]


def main():
    bin_dir, out_path = sys.argv[1:3]
    duration = float(env("DURATION", "4"))
    tgt_core, perf_core = env("TGT_CORE", "0"), env("PERF_CORE", "1")
    malloc = env("MALLOC", "1GiB")
    record = env("PROFILE_RECORD", "0") == "1"
    workloads = env_workloads()
    work = tempfile.mkdtemp(prefix="bench-prof-")
    results = []
    for wl in workloads:
        sock = os.path.join(work, "rpc.sock")
        err = open(os.path.join(work, "tgt.err"), "w+")
        stat_t, stat_p = os.path.join(work, "stat-tgt"), os.path.join(work, "stat-perf")
        # The target runs under perf stat for its whole life; its I/O commands come from get_stats
        # at the end, so no clock window has to line up with the load.
        tgt = subprocess.Popen(perf_stat_cmd(stat_t) + ["--", os.path.join(bin_dir, "ringside-tgt"),
                                "--listen", "127.0.0.1:0", "--malloc", malloc,
                                "--cores", tgt_core, "--nqn", NQN, "--name", f"benchprof-{os.getpid()}",
                                "--rpc-socket", sock] + env("TGT_ARGS", "").split(),
                               stdout=subprocess.DEVNULL, stderr=err)
        port = wait_for_port("bench-profile: ringside-tgt", tgt, err)
        if port is None:
            tgt.kill()
            sys.exit("bench-profile: ringside-tgt did not report its address")
        tgt_pid = None
        for _ in range(100):
            kids = subprocess.run(["pgrep", "-P", str(tgt.pid)], capture_output=True, text=True).stdout.split()
            if kids:
                tgt_pid = int(kids[0])
                break
            time.sleep(0.05)
        try:
            # No warm-up: the report's I/O count is then every I/O the syscalls were counted for.
            cmd = perf_stat_cmd(stat_p) + ["--"] + perf_cmd(
                os.path.join(bin_dir, "ringside-perf"), port, NQN, wl, perf_core, duration, 0)
            perf = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if record and tgt_pid:
                # Sample only while I/O runs: once the admin and I/O connections are up.
                deadline = time.monotonic() + duration
                while time.monotonic() < deadline and established(port) < 2:
                    time.sleep(0.05)
                time.sleep(0.3)
                tids = [t for t in os.listdir(f"/proc/{tgt_pid}/task")
                        if open(f"/proc/{tgt_pid}/task/{t}/comm").read().startswith("reactor")]
                # The host's worker threads too: which side is the bottleneck shows in both.
                perf_pid = None
                kids = subprocess.run(["pgrep", "-P", str(perf.pid)], capture_output=True,
                                      text=True).stdout.split()
                if kids:
                    perf_pid = int(kids[0])
                htids = [t for t in os.listdir(f"/proc/{perf_pid}/task")
                         if open(f"/proc/{perf_pid}/task/{t}/comm").read().startswith("perf-core")] \
                    if perf_pid and os.path.isdir(f"/proc/{perf_pid}/task") else []
                data = os.path.join(work, "perf.data")
                hdata = os.path.join(work, "perf-host.data")
                if os.path.exists(hdata):
                    os.remove(hdata)
                secs = str(max(0.5, min(2.0, deadline - time.monotonic() - 0.5)))
                recs = [subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2999", "-o", d,
                                          "-t", ",".join(t), "--", "sleep", secs],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        for d, t in ((data, tids), (hdata, htids)) if t]
                for r in recs:
                    r.wait()
            out, perr = perf.communicate(timeout=duration + 120)
            if perf.returncode != 0:
                sys.exit(f"bench-profile: ringside-perf failed: {perr.strip()}")
            rep = json.loads(out)
            stats = rpc(sock, "get_stats")
        finally:
            if tgt_pid:
                os.kill(tgt_pid, signal.SIGTERM)
            try:
                tgt.wait(timeout=30)
            except subprocess.TimeoutExpired:
                tgt.kill()
                tgt.wait()
        c = reactor_counters(stats)
        ios = max(1, c["io_commands"])
        t = parse_perf_stat(stat_t)
        h = parse_perf_stat(stat_p)
        tr = rep.get("transport") or {}
        hios = max(1, rep["total"]["ios"])
        row = {
            "workload": wl["name"], "iops_under_load": rep["total"]["iops"], "target_io_commands": ios,
            "target_per_io": {k: round(v / ios, 3) for k, v in sorted(t.items())},
            # The target's PDUs are the host's, mirrored (get_stats no longer counts PDUs).
            "target_pdus_per_io": {"pdus_received": round(tr.get("pdus_sent", 0) / hios, 3),
                                   "pdus_sent": round(tr.get("pdus_received", 0) / hios, 3)},
            "target_busy_poll_share": round(c["busy_polls"] / max(1, c["polls"]), 3),
            # Share of the reactor's time spent in polls that found work (get_stats busy/idle ns):
            # well below 1 with the host's core saturated means the host is the bottleneck.
            "target_busy_time_share": round(c["busy_ns"] / max(1, c["busy_ns"] + c["idle_ns"]), 3),
            "perf_per_io": {k: round(v / hios, 3) for k, v in sorted(h.items())},
            "perf_transport_per_io": {k: round(v / hios, 3) for k, v in sorted(tr.items())
                                      if isinstance(v, (int, float))},
        }
        if record:
            row["reactor_top_symbols"] = top_symbols(os.path.join(work, "perf.data"))
            if os.path.exists(os.path.join(work, "perf-host.data")):
                row["perf_worker_top_symbols"] = top_symbols(os.path.join(work, "perf-host.data"))
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
    rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = {"benchmark": "nvme-tcp loopback per-I/O profile (syscalls, PDUs, CPU shares)", "bin_dir": bin_dir,
           "binaries": {b: os.path.realpath(os.path.join(bin_dir, b)) for b in ("ringside-tgt", "ringside-perf")},
           "script_rev": rev, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"nproc": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
           "config": {"duration": duration, "malloc": malloc, "tgt_args": env("TGT_ARGS", "")},
           "results": results}
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=2)
    for r in results:
        t, p, pt = r["target_per_io"], r["perf_per_io"], r["perf_transport_per_io"]
        print(f"{r['workload']:<16} target: syscalls {t.get('syscalls_total', 0):6.2f} recv {t.get('recvfrom', 0):5.2f} "
              f"(data {t.get('recvfrom_with_data', 0):4.2f}) writev {t.get('writev', 0):4.2f} "
              f"pdus rx/tx {r['target_pdus_per_io']['pdus_received']:.2f}/{r['target_pdus_per_io']['pdus_sent']:.2f} "
              f"| "
              f"perf: syscalls {p.get('syscalls_total', 0):6.2f} recv {p.get('read', 0) + p.get('readv', 0) + p.get('recvfrom', 0):5.2f} "
              f"(data {p.get('read_with_data', 0) + p.get('readv_with_data', 0) + p.get('recvfrom_with_data', 0):4.2f}) "
              f"writev {p.get('writev', 0):4.2f} pdus rx {pt.get('pdus_received', 0):.2f}")
    print(f"written to {out_path}")


if __name__ == "__main__":
    main()
