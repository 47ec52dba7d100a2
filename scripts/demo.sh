#!/usr/bin/env bash
# The main job on the embedded defaults: build, start ringside-tgt on loopback with a RAM namespace,
# check data integrity with ringside-perf, then drive the target with a deliberately poor initiator
# configuration (queue depth 1), let `ringside diagnose` watch it, apply what it recommends and
# show the before/after figures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p nvmf-target -p bench-harness -p agent
T=${CARGO_TARGET_DIR:-target}/release
PORT=${RINGSIDE_DEMO_PORT:-4420}
NQN=nqn.2026-11.io.ringside:nvme0
SOCK=/var/tmp/ringside-demo.sock
OUT=${RINGSIDE_DEMO_OUT:-/var/tmp/ringside-demo}
mkdir -p "$OUT"
"$T/ringside-tgt" --name demo --listen 127.0.0.1:$PORT --malloc 256MiB --cores 0 --rpc-socket $SOCK &
TGT=$!
LOAD=
trap 'kill $LOAD $TGT 2>/dev/null; wait $TGT 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
TRID="trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:$NQN"
CORE=$(( $(nproc) > 1 ? 1 : 0 ))

echo "== 1. verify: write a pattern over 64 MiB, random mixed I/O, check every read"
"$T/ringside-perf" -r "$TRID" -q 16 -o 16384 -w randrw -M 50 -t 3 --range 64MiB --verify --cores $CORE

echo "== 2. a poor initiator: 4 KiB random reads at queue depth 1, while ringside diagnose watches"
"$T/ringside-perf" -r "$TRID" -q 1 -o 4096 -w randread -t 12 --cores $CORE --json > "$OUT/before.json" &
LOAD=$!
sleep 1
"$T/ringside" --name demo diagnose --duration 8s --json --html "$OUT/report.html" > "$OUT/report.json"
wait $LOAD; LOAD=
jq -r '.findings[] | "finding: [\(.severity)] \(.kind) (\(.subject | to_entries | map("\(.value)") | join(" "))) — \(.summary)"' "$OUT/report.json"
jq -r '.recommendations[] | "recommend: \(.setting) \(.current) -> \(.proposed) (\(.applies_to)): \(.expected_effect)\n    \(.fragment)"' "$OUT/report.json"
QD=$(jq -r '[.recommendations[] | select(.setting == "initiator_queue_depth") | .proposed][0] // empty' "$OUT/report.json")
if [ -z "$QD" ]; then
  echo "the agent recommended no initiator queue depth; full report:"; jq . "$OUT/report.json"; exit 1
fi

echo "== 3. apply the recommendation: queue depth $QD"
"$T/ringside-perf" -r "$TRID" -q "$QD" -o 4096 -w randread -t 5 --cores $CORE --json > "$OUT/after.json"

B=$(jq '.total.iops' "$OUT/before.json"); A=$(jq '.total.iops' "$OUT/after.json")
EXP=$(jq '[.recommendations[] | select(.setting == "initiator_queue_depth") | .expected_iops][0] // 0' "$OUT/report.json")
echo "== before/after (4 KiB random read, 1 target core)"
printf '  before: QD1   %10.0f IOPS   p50 %s us\n' "$B" "$(jq '.total.latency.p50_us' "$OUT/before.json")"
RANGE=$(jq -r '[.recommendations[] | select(.setting == "initiator_queue_depth") | .expected_iops_range][0] // empty | "\(.[0] | floor)-\(.[1] | floor)"' "$OUT/report.json")
printf '  after:  QD%-3s %10.0f IOPS   p50 %s us   (agent expected ~%.0f, range %s)\n' "$QD" "$A" "$(jq '.total.latency.p50_us' "$OUT/after.json")" "$EXP" "${RANGE:-none}"
jq -r '.agent_cost // empty | "  agent:  \(.cpu_seconds / .wall_seconds * 100 * 100 | round / 100) % of a core, peak RSS \(.max_rss_bytes / 1048576 * 10 | round / 10) MiB, \((.on_reactor_cores_seconds // 0) * 1000 | round) ms on the reactor core (its own cost)"' "$OUT/report.json"
awk -v a="$A" -v b="$B" 'BEGIN { printf "  ratio:  %.1fx\n", a / b }'
echo "Full report: $OUT/report.html (self-contained), $OUT/report.json; Markdown: ringside report or diagnose without --json"
