#!/usr/bin/env bash
# The main job on the embedded defaults: build, start ringside-tgt on loopback with a RAM namespace,
# drive it with ringside-perf (a verify pass, then 4 KiB random reads at queue depth 1 and 32), print the results,
# then show what the agent sees through the target's shared-memory trace rings.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p nvmf-target -p bench-harness -p agent
T=${CARGO_TARGET_DIR:-target}/release
PORT=${RINGSIDE_DEMO_PORT:-4420}
NQN=nqn.2026-11.io.ringside:nvme0
SOCK=/var/tmp/ringside-demo.sock
"$T/ringside-tgt" --name demo --listen 127.0.0.1:$PORT --malloc 256MiB --cores 0 --rpc-socket $SOCK &
TGT=$!
trap 'kill $TGT 2>/dev/null; wait $TGT 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
TRID="trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:$NQN"
CORE=$(( $(nproc) > 1 ? 1 : 0 ))
echo "== verify: write a pattern over 64 MiB, random mixed I/O, check every read"
"$T/ringside-perf" -r "$TRID" -q 16 -o 16384 -w randrw -M 50 -t 3 --range 64MiB --verify --cores $CORE
for qd in 1 32; do
  echo "== 4 KiB random read, queue depth $qd, one initiator core"
  "$T/ringside-perf" -r "$TRID" -q $qd -o 4096 -w randread -t 5 --cores $CORE
done
echo "== what the agent sees: the instance, the last requests with their per-stage durations"
"$T/ringside" --name demo trace --describe | head -8 || true
"$T/ringside" --name demo trace --requests 2>&1 | tail -6 || true
