#!/bin/sh
# NUMA misplacement for real (runs inside the lab guest: 2 nodes, CPUs 0-1 on node 0, 2-3 on node 1):
# ringside-tgt's reactor runs on CPU 0 (node 0) while its buffers are bound to node 1 with
# `numactl --membind=1`; ringside-perf loads it from CPU 2; `ringside diagnose` (live hwloc topology,
# numa_maps) must report numa_misplacement on reactor 0 and recommend binding memory to node 0 or moving
# the reactor. A second run without the binding must not report it. A third run ("placed") proves the target
# binds memory itself (DESIGN §2): no numactl, the reactor on CPU 2 (node 1), the main and helper threads (which
# map and prefault the malloc namespace) wherever the scheduler puts them; /proc/PID/numa_maps must show the
# namespace mapping with policy prefer:1 (set by the target's mbind) and its pages on node 1, and diagnose must
# find no misplacement.
# Usage (host): bench-harness/lab/run.sh -- bench-harness/lab/guest/numa-diagnose.sh <ringside-tgt> <ringside-perf> <ringside>
. "$(dirname "$0")/lib-nvmf.sh"
TGT=${1:?usage: numa-diagnose.sh <ringside-tgt> <ringside-perf> <ringside>}; PERF=${2:?}; RS=${3:?}
PORT=4420
NQN=nqn.2026-11.io.ringside:nvme0
nodes=$(ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null | wc -l)
res guest.numa_nodes "$nodes"
[ "$nodes" -ge 2 ] || { fail guest.numa_nodes "the guest has $nodes NUMA node(s), need 2"; lab_finish; exit; }

# run <key> [numactl args...]: target (under numactl when args are given) + load + diagnose; the report lands in $WORK/<key>.json and the target's
# numa_maps (read under load) in $WORK/<key>-numa_maps.txt. RCORE / PCORE: reactor and perf CPUs (default 0 / 2).
run() {
  local key=$1 i rcore=${RCORE:-0} pcore=${PCORE:-2}; shift
  [ $# -gt 0 ] && set -- numactl "$@"
  "$@" "$TGT" --name "$key" --listen 127.0.0.1:$PORT --malloc 128MiB --cores $rcore --trace-dir "$WORK" \
    >"$WORK/$key-tgt.log" 2>&1 &
  local tpid=$!
  for i in $(seq 1 300); do ss -ltnH "sport = :$PORT" 2>/dev/null | grep -q LISTEN && break; sleep 0.1; done
  # Touch the whole namespace so its pages exist (and sit where the policy put them).
  "$PERF" -r "trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:$NQN" -q 16 -o 131072 -w write \
    -t 30 --io-limit 1024 --cores $pcore >"$WORK/$key-fill.log" 2>&1
  "$PERF" -r "trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:$NQN" -q 4 -o 4096 -w randread \
    -t 40 --cores $pcore >"$WORK/$key-perf.log" 2>&1 &
  local ppid=$! n=0
  # diagnose once the load is on the reactor (its read count moves), not after a fixed sleep: under TCG on a
  # loaded host perf can take many seconds to connect
  for i in $(seq 1 900); do
    n=$("$RS" --name "$key" rpc get_stats 2>/dev/null | jq '[.reactors[].commands.read] | add // 0' 2>/dev/null)
    [ "${n:-0}" -ge 100 ] && break
    sleep 0.1
  done
  res "$key.reads_before_diagnose" "${n:-0}"
  "$RS" --file "$WORK/ringside.$key" diagnose --duration 10s --json >"$WORK/$key.json" 2>"$WORK/$key-agent.log"
  local rc=$?
  cat "/proc/$tpid/numa_maps" >"$WORK/$key-numa_maps.txt" 2>/dev/null
  kill $ppid 2>/dev/null; wait $ppid 2>/dev/null
  kill -TERM $tpid; wait $tpid
  res "$key.diagnose.status" $rc
  echo "$key findings:"; jq -c '.findings[] | [.kind, .subject, .summary]' "$WORK/$key.json" | sed 's/^/  | /'
  echo "$key memory:"; jq -c '.overall.memory' "$WORK/$key.json" | sed 's/^/  | /'
}

run membind --cpunodebind=0 --membind=1
if jq -e '.findings[] | select(.kind == "numa_misplacement" and .subject.type == "reactor" and .subject.index == 0)' \
     "$WORK/membind.json" >/dev/null; then
  res membind.numa_misplacement ok
else
  fail membind.numa_misplacement "no numa_misplacement on reactor 0 with buffers bound to node 1" \
    "$WORK/membind.json" "$WORK/membind-agent.log" "$WORK/membind-tgt.log"
fi
res membind.recommendations "$(jq -r '[.recommendations[].setting] | join(",")' "$WORK/membind.json")"
res membind.buffer_nodes "$(jq -r '[.overall.memory.buffer_bytes_by_node[] | "\(.[0]):\(.[1])"] | join(",")' "$WORK/membind.json")"

run local --cpunodebind=0 --membind=0
if jq -e '.findings[] | select(.kind == "numa_misplacement")' "$WORK/local.json" >/dev/null; then
  fail local.numa_misplacement "numa_misplacement reported with buffers on the reactor's node" "$WORK/local.json"
else
  res local.numa_misplacement ok
fi

RCORE=2 PCORE=0 run placed
# the malloc namespace: the one mapping whose policy the target set (prefer:<reactor node>)
line=$(grep ' prefer:' "$WORK/placed-numa_maps.txt" | head -n 1)
echo "placed: namespace mapping: $line"
res placed.malloc_policy "$(echo "$line" | awk '{print $2}')"
res placed.malloc_pages "N0=$(echo "$line" | sed -n 's/.* N0=\([0-9]*\).*/\1/p') N1=$(echo "$line" | sed -n 's/.* N1=\([0-9]*\).*/\1/p')"
res placed.buffer_nodes "$(jq -r '[.overall.memory.buffer_bytes_by_node[] | "\(.[0]):\(.[1])"] | join(",")' "$WORK/placed.json")"
grep 'numa\|memory policy' "$WORK/placed-tgt.log" | sed 's/^/  | /'
if jq -e '.findings[] | select(.kind == "numa_misplacement")' "$WORK/placed.json" >/dev/null; then
  fail placed.numa_misplacement "numa_misplacement reported although the target bound its memory to the reactor's node" \
    "$WORK/placed.json" "$WORK/placed-numa_maps.txt" "$WORK/placed-tgt.log"
else
  res placed.numa_misplacement ok
fi
lab_finish
