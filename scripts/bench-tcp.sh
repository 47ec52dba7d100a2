#!/usr/bin/env bash
# NVMe/TCP loopback benchmark: ringside-tgt (malloc namespace, one reactor core) driven by
# ringside-perf (4 KiB random reads, one worker core) at several queue depths.
#
# Usage: scripts/bench-tcp.sh                    one build, several queue depths (below)
#        scripts/bench-tcp.sh --baseline REV     same-run A/B: this tree (A) against git revision REV (B)
#        scripts/bench-tcp.sh --profile [BIN_DIR] per-I/O profile (syscalls, PDUs, CPU shares) of this
#                                                tree's release build (or of BIN_DIR, e.g. a baseline's)
#        scripts/bench-tcp.sh --trace-ab         same-run cost of tracing: this tree's build with
#                                                tracing on (A) against itself with --no-trace (B)
#        scripts/bench-tcp.sh --ceiling          same-run ratio of this tree's QD1 and 128 KiB reads to
#                                                the kernel sockets' own ceiling (scripts/socket-ceiling.c,
#                                                scripts/bench_ceiling.py: ROUNDS, DURATION, MALLOC, NICE)
#
# --trace-ab runs scripts/bench_ab.py with one build on both sides (same WORKLOADS, ROUNDS, DURATION,
# WARMUP, NICE... as --baseline below; A_TGT_ARGS adds flags to both targets' common setup, e.g.
# "--trace-ring-records 65536"): interleaved rounds, per workload the ratio on/off (median, min, max)
# and the cost (1 - ratio) in %, JSON in OUT=bench-results/trace-ab-<rev>.json.
#
# --profile runs scripts/bench_profile.py (see its header): counts that do not depend on the machine's
# load (syscalls by kind and receives with data per I/O on both sides, PDUs per I/O), with
# PROFILE_RECORD=1 also the reactor's top symbols (perf record -e cpu-clock). Same WORKLOADS variable;
# TGT_ARGS adds target flags (e.g. "--c2h-success auto"), PERF_ARGS ringside-perf flags (e.g. "--sq-flow-control"); OUT=bench-results/profile-<rev>.json.
#
# --baseline REV builds REV in a detached worktree under $BASELINE_DIR (default
# /var/tmp/ringside-baseline) with its own target directory, then runs scripts/bench_ab.py: ROUNDS=3
# interleaved rounds (AB, BA, ...) of every workload in
#   WORKLOADS="randread:4k:1 randread:4k:32 randread:4k:128 randrw70:4k:32 randread:128k:8"
# (kind[mix]:io_size:queue_depth), DURATION=5 s each after WARMUP=1 s, a fresh target per run; both
# targets are driven by this tree's ringside-perf; PERF_AB=1 also compares the two ringside-perf builds
# against this tree's target; A_TGT_ARGS adds flags to A's target only (e.g. "--c2h-success auto"), PERF_ARGS to every ringside-perf run (e.g. "--sq-flow-control", as the Linux and SPDK hosts connect). Prints per-workload ratios A/B (median, min, max) and writes
# OUT=bench-results/ab-<A>-vs-<B>.json.
# Environment (all optional):
#   DURATION=10      seconds measured per run        WARMUP=1   warm-up seconds per run
#   QDS="1 32 128"   queue depths                    REPEAT=1   runs per queue depth
#   IO_SIZE=4096     bytes per I/O                   WORKLOAD=randread
#   TGT_CORE=0       reactor core                    PERF_CORE=1  initiator core
#   MALLOC=1GiB      namespace size                  OUT=bench-results/tcp-qd-<rev>.json
#   NO_BUILD=1       use the binaries already built in ${CARGO_TARGET_DIR:-target}/release
#   NICE=-20         run target and initiator at this nice level, in their own session whose
#                    scheduler autogroup gets the same nice (with autogroups, a task's nice only
#                    counts inside its session). On a shared, busy machine the busy-polling
#                    threads otherwise spend most of the run waiting on the run queue. Needs root.
#
# Writes one JSON file stamped with the git revision, date and machine, holding every run's
# full ringside-perf report, and prints a summary table (median and spread over REPEAT runs).
set -euo pipefail
if [ -n "${NICE:-}" ] && [ -z "${BENCH_TCP_SESSION:-}" ] && command -v setsid >/dev/null; then
  export BENCH_TCP_SESSION=1
  exec setsid --wait "$0" "$@"
fi
cd "$(dirname "$0")/.."
if [ -n "${NICE:-}" ] && [ -e /proc/self/autogroup ]; then
  echo "$NICE" 2>/dev/null >/proc/self/autogroup || echo "bench-tcp: cannot set the autogroup nice (not root?)" >&2
fi

if [ "${1:-}" = "--profile" ]; then
  command -v perf >/dev/null || { echo "bench-tcp: perf is needed for --profile" >&2; exit 1; }
  PBIN=${2:-${CARGO_TARGET_DIR:-target}/release}
  if [ -z "${2:-}" ] && [ -z "${NO_BUILD:-}" ]; then
    cargo build --release -q -p nvmf-target -p bench-harness
  fi
  REV=$(git rev-parse --short=12 HEAD)
  exec python3 scripts/bench_profile.py "$PBIN" "${OUT:-bench-results/profile-$REV.json}"
fi

if [ "${1:-}" = "--trace-ab" ]; then
  command -v python3 >/dev/null || { echo "bench-tcp: python3 is needed" >&2; exit 1; }
  REV=$(git rev-parse --short=12 HEAD)
  git diff --quiet HEAD -- 2>/dev/null || REV="$REV-dirty"
  if [ -z "${NO_BUILD:-}" ]; then
    echo "bench-tcp: building this tree ($REV), release" >&2
    cargo build --release -q -p nvmf-target -p bench-harness
  fi
  BIN="${CARGO_TARGET_DIR:-target}/release"
  # Both sides get A_TGT_ARGS; B also --no-trace. PERF_AB is meaningless with one build.
  export B_TGT_ARGS="${A_TGT_ARGS:-} --no-trace" AB_MODE=trace PERF_AB=0
  exec python3 scripts/bench_ab.py "$BIN" "$BIN" "$REV-trace" "$REV-notrace" \
    "${OUT:-bench-results/trace-ab-$REV.json}"
fi

if [ "${1:-}" = "--ceiling" ]; then
  command -v python3 >/dev/null || { echo "bench-tcp: python3 is needed" >&2; exit 1; }
  CC=${CC:-cc}
  command -v "$CC" >/dev/null || { echo "bench-tcp: --ceiling needs a C compiler (apt-get install gcc)" >&2; exit 1; }
  REV=$(git rev-parse --short=12 HEAD)
  git diff --quiet HEAD -- 2>/dev/null || REV="$REV-dirty"
  if [ -z "${NO_BUILD:-}" ]; then
    echo "bench-tcp: building this tree ($REV), release" >&2
    cargo build --release -q -p nvmf-target -p bench-harness
  fi
  PROBE=$(mktemp -d)/socket-ceiling
  "$CC" -O2 -pthread -o "$PROBE" scripts/socket-ceiling.c
  exec python3 scripts/bench_ceiling.py "${CARGO_TARGET_DIR:-target}/release" "$PROBE" \
    "${OUT:-bench-results/ceiling-$REV.json}"
fi

if [ "${1:-}" = "--baseline" ]; then
  [ -n "${2:-}" ] || { echo "bench-tcp: --baseline needs a git revision" >&2; exit 2; }
  command -v python3 >/dev/null || { echo "bench-tcp: python3 is needed" >&2; exit 1; }
  BREV=$(git rev-parse --verify -q "$2^{commit}") || { echo "bench-tcp: $2 is not a git revision here" >&2; exit 2; }
  BSHORT=$(git rev-parse --short=12 "$BREV")
  AREV=$(git rev-parse --short=12 HEAD)
  git diff --quiet HEAD -- 2>/dev/null || AREV="$AREV-dirty"
  BASE=${BASELINE_DIR:-/var/tmp/ringside-baseline}
  mkdir -p "$BASE"
  if [ ! -d "$BASE/$BSHORT" ]; then
    git worktree add --detach -q "$BASE/$BSHORT" "$BREV"
  fi
  if [ -z "${NO_BUILD:-}" ]; then
    echo "bench-tcp: building this tree ($AREV) and the baseline ($BSHORT), release" >&2
    cargo build --release -q -p nvmf-target -p bench-harness
    (cd "$BASE/$BSHORT" && CARGO_TARGET_DIR="$BASE/target-$BSHORT" cargo build --release -q -p nvmf-target -p bench-harness)
  fi
  OUT=${OUT:-bench-results/ab-$AREV-vs-$BSHORT.json}
  exec python3 scripts/bench_ab.py "${CARGO_TARGET_DIR:-target}/release" "$BASE/target-$BSHORT/release" \
    "$AREV" "$BSHORT" "$OUT"
fi

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
QDS=${QDS:-"1 32 128"}
REPEAT=${REPEAT:-1}
IO_SIZE=${IO_SIZE:-4096}
WORKLOAD=${WORKLOAD:-randread}
TGT_CORE=${TGT_CORE:-0}
PERF_CORE=${PERF_CORE:-1}
MALLOC=${MALLOC:-1GiB}
NICE=${NICE:-}
RUN=()
[ -n "$NICE" ] && RUN=(nice -n "$NICE")
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/release"

command -v python3 >/dev/null || { echo "bench-tcp: python3 is needed to assemble the JSON" >&2; exit 1; }

if [ -z "${NO_BUILD:-}" ]; then
  echo "bench-tcp: building release binaries" >&2
  cargo build --release -q -p nvmf-target -p bench-harness
fi
for b in ringside-tgt ringside-perf; do
  [ -x "$BIN/$b" ] || { echo "bench-tcp: $BIN/$b missing (build with cargo build --release)" >&2; exit 1; }
done

REV=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
DIRTY=false
git diff --quiet HEAD -- 2>/dev/null || DIRTY=true
OUT=${OUT:-bench-results/tcp-qd-$REV.json}
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d)
TGT_PID=""
cleanup() {
  if [ -n "$TGT_PID" ]; then kill "$TGT_PID" 2>/dev/null || true; wait "$TGT_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

NQN="nqn.2026-11.io.ringside:bench"
"${RUN[@]}" "$BIN/ringside-tgt" --listen 127.0.0.1:0 --malloc "$MALLOC" --cores "$TGT_CORE" --nqn "$NQN" \
  --name "bench-$$" --rpc-socket "$WORK/rpc.sock" >"$WORK/tgt.out" 2>"$WORK/tgt.err" &
TGT_PID=$!
ADDR=""
for _ in $(seq 1 200); do
  ADDR=$(sed -n 's/^ringside-tgt: listening on tcp //p' "$WORK/tgt.err" | head -1)
  [ -n "$ADDR" ] && break
  kill -0 "$TGT_PID" 2>/dev/null || { echo "bench-tcp: ringside-tgt exited:" >&2; cat "$WORK/tgt.err" >&2; exit 1; }
  sleep 0.05
done
[ -n "$ADDR" ] || { echo "bench-tcp: ringside-tgt did not report its address" >&2; exit 1; }
PORT=${ADDR##*:}
echo "bench-tcp: ringside-tgt (pid $TGT_PID) on $ADDR, reactor core $TGT_CORE; perf on core $PERF_CORE" >&2

# CPU accounting of the target's reactor threads (user/system ticks, on-cpu and run-queue ns).
reactor_usage() {
  python3 - "$TGT_PID" <<'PY'
import glob, json, sys
pid = sys.argv[1]
tot = {"user_ticks": 0, "system_ticks": 0, "on_cpu_ns": 0, "run_queue_wait_ns": 0, "threads": 0}
for t in glob.glob(f"/proc/{pid}/task/*"):
    try:
        if not open(f"{t}/comm").read().startswith("reactor"):
            continue
        st = open(f"{t}/stat").read()
        f = st[st.rfind(")") + 1:].split()
        tot["user_ticks"] += int(f[11]); tot["system_ticks"] += int(f[12])
        ss = open(f"{t}/schedstat").read().split()
        tot["on_cpu_ns"] += int(ss[0]); tot["run_queue_wait_ns"] += int(ss[1])
        tot["threads"] += 1
    except (OSError, ValueError, IndexError):
        pass
print(json.dumps(tot))
PY
}

TRID="trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:$NQN"
RUNS=()
for qd in $QDS; do
  for r in $(seq 1 "$REPEAT"); do
    f="$WORK/qd$qd-r$r.json"
    echo "bench-tcp: qd $qd run $r/$REPEAT (${DURATION}s)" >&2
    reactor_usage >"$f.tgt0"
    "${RUN[@]}" "$BIN/ringside-perf" -r "$TRID" -q "$qd" -o "$IO_SIZE" -w "$WORKLOAD" -t "$DURATION" \
      --warmup "$WARMUP" --cores "$PERF_CORE" --json >"$f"
    reactor_usage >"$f.tgt1"
    RUNS+=("$qd:$f")
  done
done

python3 - "$OUT" "$REV" "$DIRTY" "$TGT_CORE" "$PERF_CORE" "$MALLOC" "$IO_SIZE" "$WORKLOAD" "${NICE:-0}" "${RUNS[@]}" <<'EOF'
import json, os, platform, statistics, subprocess, sys, datetime
out, rev, dirty, tgt_core, perf_core, malloc, io_size, workload, nice, *runs = sys.argv[1:]
def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
TCK = os.sysconf("SC_CLK_TCK")
by_qd = {}
for r in runs:
    qd, path = r.split(":", 1)
    rep = json.load(open(path))
    try:
        a, b = json.load(open(path + ".tgt0")), json.load(open(path + ".tgt1"))
        # Includes the warm-up and connect time of the run: an approximation of the split.
        rep["target_reactor_usage"] = {
            "user_s": (b["user_ticks"] - a["user_ticks"]) / TCK,
            "system_s": (b["system_ticks"] - a["system_ticks"]) / TCK,
            "on_cpu_s": (b["on_cpu_ns"] - a["on_cpu_ns"]) / 1e9,
            "run_queue_wait_s": (b["run_queue_wait_ns"] - a["run_queue_wait_ns"]) / 1e9,
            "threads": b["threads"],
        }
    except (OSError, ValueError, KeyError):
        pass
    by_qd.setdefault(int(qd), []).append(rep)
results = []
for qd, reps in sorted(by_qd.items()):
    iops = [x["total"]["iops"] for x in reps]
    lat = [x["total"]["latency"] for x in reps]
    med = sorted(range(len(reps)), key=lambda i: iops[i])[len(reps) // 2]
    results.append({
        "qd": qd,
        "iops_median": statistics.median(iops),
        "iops_min": min(iops),
        "iops_max": max(iops),
        "mib_s_median": statistics.median(x["total"]["mib_s"] for x in reps),
        # Latencies and usage below are those of the median-IOPS run.
        "avg_us": lat[med]["avg_us"], "p50_us": lat[med]["p50_us"], "p99_us": lat[med]["p99_us"],
        "p999_us": lat[med]["p999_us"], "max_us": lat[med]["max_us"],
        "errors": sum(x["total"]["errors"] for x in reps),
        "median_run": med,
        "initiator_usage": reps[med]["cores"][0].get("usage") if reps[med]["cores"] else None,
        "initiator_transport": reps[med].get("transport"),
        "target_reactor_usage": reps[med].get("target_reactor_usage"),
        "runs": reps,
    })
doc = {
    "benchmark": "nvme-tcp loopback, ringside-tgt malloc + ringside-perf",
    "git_rev": rev, "git_dirty": dirty == "true",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {"nproc": os.cpu_count(), "kernel": platform.release(), "cpu_model": cpu_model(),
                "loadavg_at_end": os.getloadavg()},
    "setup": {"target": f"ringside-tgt --malloc {malloc} --cores {tgt_core}",
              "initiator": f"ringside-perf -o {io_size} -w {workload} --cores {perf_core}",
              "nice": int(nice)},
    "reference_spdk_same_machine_kind": {"qd1_iops": 67000, "qd1_avg_us": 15,
                                         "qd32_iops": [450000, 470000], "qd128_iops": 490000},
    "results": results,
}
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
print(f"{'QD':>5} {'IOPS(median)':>14} {'min':>11} {'max':>11} {'MiB/s':>9} {'avg us':>8} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'errors':>7}")
for r in results:
    print(f"{r['qd']:>5} {r['iops_median']:>14.0f} {r['iops_min']:>11.0f} {r['iops_max']:>11.0f} {r['mib_s_median']:>9.1f} "
          f"{r['avg_us']:>8.2f} {r['p50_us']:>8.2f} {r['p99_us']:>8.2f} {r['p999_us']:>9.2f} {r['errors']:>7}")
print()
print(f"{'QD':>5} {'perf sys%':>9} {'perf usr%':>9} {'perf rq-wait s':>14} {'recv/IO':>8} {'empty/IO':>9} {'send/IO':>8} {'tgt sys%':>9} {'tgt usr%':>9} {'tgt rq-wait s':>13}")
for r in results:
    u = r["initiator_usage"] or {}
    t = r["initiator_transport"] or {}
    g = r["target_reactor_usage"] or {}
    m = r["runs"][r["median_run"]]
    el = m["total"]["elapsed_s"] or 1
    ios = max(1, m["total"]["ios"])
    wall = el + float(os.environ.get("WARMUP", "1"))
    print(f"{r['qd']:>5} {100*u.get('system_s',0)/el:>9.1f} {100*u.get('user_s',0)/el:>9.1f} {u.get('run_queue_wait_s',0):>14.3f} "
          f"{t.get('recv_calls',0)/ios:>8.2f} {t.get('recv_empty',0)/ios:>9.2f} {t.get('send_calls',0)/ios:>8.2f} "
          f"{100*g.get('system_s',0)/wall:>9.1f} {100*g.get('user_s',0)/wall:>9.1f} {g.get('run_queue_wait_s',0):>13.3f}")
print(f"reference (SPDK nvmf_tgt + spdk_nvme_perf, 1 core each): QD1 ~67K IOPS (~15 us), QD32 450-470K, QD128 490K")
print(f"written to {out}")
EOF
