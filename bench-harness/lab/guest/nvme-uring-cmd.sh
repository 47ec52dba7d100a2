#!/bin/sh
# The uring-cmd backend for real (runs inside the lab guest started with --nvme-img IMG and
# --append nvme.poll_queues=1: an emulated NVMe controller, serial "lab", on NUMA node 1, driven by the
# guest kernel's nvme driver with one poll queue). One boot checks:
#   dev.*       the controller's generic character device /dev/ngXn1, its node, io_poll
#   bad.*       one ringside-tgt with a malloc namespace plus --uring-cmd of a missing /dev/ngXnY and of the
#               block device /dev/nvmeXn1: one line each naming the fix, the malloc namespace still served
#               (ringside-perf --verify on it)
#   perm.*      the same as user nobody: opening the character device is refused, one line naming the fix,
#               the malloc namespace still served
#   uc.*        ringside-tgt --uring-cmd /dev/ngXn1 on core 0 (node 0): the startup line (IOPOLL, node),
#               ringside-perf --verify at 512 B, 4 KiB and 128 KiB, the trace description (device path, node,
#               queue ids)
#   kernel.*    the kernel initiator (nvme-tcp over loopback): Write Zeroes and Dataset Management deallocate
#               read back as zeroes, Flush
#   status.*    with Deallocated or Unwritten Logical Block Error on (Set Features 05h, DULBE), a read of a
#               block never written: the controller's status (SCT 2h, SC 87h) reaches the host unchanged
#               (only where the controller takes DULBE: QEMU 10.0 refuses it, status.dulbe_on=unsupported)
#   diagnose.*  `ringside diagnose` names the device and its node 1 and raises numa_misplacement for reactor 0
#   restart.*   SIGKILL under load, start again on the same device, verify again
# Usage (host): bench-harness/lab/run.sh --nvme-img IMG --append nvme.poll_queues=1 -- \
#                 bench-harness/lab/guest/nvme-uring-cmd.sh <ringside-tgt> <ringside-perf> <ringside>
. "$(dirname "$0")/lib-nvmf.sh"
TGT=${1:?usage: nvme-uring-cmd.sh <ringside-tgt> <ringside-perf> <ringside>}; PERF=${2:?}; RS=${3:?}
ADDR=127.0.0.1 PORT=4420
NQN=nqn.2026-11.io.ringside:nvme0
TRID="trtype:tcp adrfam:ipv4 traddr:$ADDR trsvcid:$PORT subnqn:$NQN"
TPID=""

modprobe nvme; modprobe nvme-tcp
CTRL=""
for i in $(seq 1 300); do
  for c in /sys/class/nvme/nvme*; do
    [ "$(tr -d ' ' <"$c/serial" 2>/dev/null)" = lab ] && CTRL=$(basename "$c")
  done
  [ -n "$CTRL" ] && [ -e "/dev/ng${CTRL#nvme}n1" ] && break; sleep 0.1
done
NG=/dev/ng${CTRL#nvme}n1 BLK=${CTRL}n1
[ -n "$CTRL" ] && [ -c "$NG" ] || { fail dev.ng "no emulated NVMe controller 'lab' with a generic device (boot with --pci)"; lab_finish; exit; }
res dev.ng "$NG"
res dev.numa_node "$(cat /sys/class/nvme/$CTRL/device/numa_node)"
res dev.io_poll "$(cat /sys/block/$BLK/queue/io_poll 2>/dev/null)"
res dev.poll_queues "$(cat /sys/module/nvme/parameters/poll_queues 2>/dev/null)"
res dev.paths "$(ls /sys/block | grep "^${CTRL%%[0-9]*}${CTRL#nvme}c" | tr '\n' ' ')"
res dev.sysfs "$(readlink -f /sys/class/nvme-generic/$(basename "$NG"))"

# start_tgt <key> [args]: ringside-tgt in the background ($TPID), listening within 60 s; RUNAS may prefix it.
start_tgt() {
  local key=$1 i; shift
  $RUNAS "$TGT" --listen $ADDR:$PORT --name "$key" --trace-dir "$WORK" --rpc-socket "$WORK/$key.sock" "$@" \
    >"$WORK/$key.log" 2>&1 &
  TPID=$!
  for i in $(seq 1 600); do
    if ! kill -0 $TPID 2>/dev/null; then
      wait $TPID; fail "$key.start" "ringside-tgt exited with status $? before listening" "$WORK/$key.log"; TPID=""; return 1
    fi
    grep -q "listening on tcp" "$WORK/$key.log" && { res "$key.start" ok; return 0; }
    sleep 0.1
  done
  fail "$key.start" "not listening after 60 s" "$WORK/$key.log"; return 1
}
# stop_tgt <key>: SIGTERM, exit status 0 within 60 s
stop_tgt() {
  local key=$1 i rc
  [ -n "$TPID" ] || return 1
  kill -TERM $TPID
  for i in $(seq 1 600); do kill -0 $TPID 2>/dev/null || break; sleep 0.1; done
  if kill -0 $TPID 2>/dev/null; then
    fail "$key.stop" "still running 60 s after SIGTERM" "$WORK/$key.log"; kill -KILL $TPID; wait $TPID; TPID=""; return 1
  fi
  wait $TPID; rc=$?; TPID=""
  echo "ringside-tgt ($key) log:"; sed 's/^/  | /' "$WORK/$key.log"
  res "$key.stop.status" $rc
  [ $rc -eq 0 ] && res "$key.stop" ok || fail "$key.stop" "exit status $rc after SIGTERM" "$WORK/$key.log"
}
# perf_verify <key> <io size> [perf args]: ringside-perf --verify exits 0, checked blocks, no mismatch, no error
perf_verify() {
  local key=$1 sz=$2 rc; shift 2
  timeout 300 "$PERF" -r "$TRID" -q 8 -o "$sz" -w randrw --verify --range 8MiB -t 3 --io-limit 1500 --cores 2 \
    --io-timeout 60 --json "$@" >"$WORK/$key.json" 2>"$WORK/$key.err"
  rc=$?
  jq -r '"checked_blocks=\(.verify.checked_blocks // 0)", "mismatches=\(.verify.mismatches // -1)",
      "errors=\(.total.errors)", "reads=\(.total.reads)", "writes=\(.total.writes)"' "$WORK/$key.json" \
    >"$WORK/$key.kv" 2>>"$WORK/$key.err"
  while IFS= read -r kv; do res "$key.${kv%%=*}" "${kv#*=}"; done <"$WORK/$key.kv"
  res "$key.status" $rc
  if [ $rc -eq 0 ] && grep -q '^mismatches=0$' "$WORK/$key.kv" && grep -q '^errors=0$' "$WORK/$key.kv" \
     && ! grep -q '^checked_blocks=0$' "$WORK/$key.kv"; then res "$key" ok
  else fail "$key" "ringside-perf --verify -o $sz exited $rc" "$WORK/$key.kv" "$WORK/$key.err" "$WORK/$key.json"; fi
}
# one_line <key> <log> <pattern...>: exactly one "not served" line, holding every pattern
one_line() {
  local key=$1 log=$2 l p; shift 2
  l=$(grep "not served" "$log" | grep -F "$1")
  res "$key.line" "$l"
  [ "$(printf '%s\n' "$l" | grep -c .)" = 1 ] || { fail "$key" "expected one 'not served' line for $1" "$log"; return 1; }
  for p in "$@"; do printf '%s' "$l" | grep -qF -- "$p" || { fail "$key" "the line does not say '$p'" "$log"; return 1; }; done
  res "$key" ok
}
# zeroes_at <dev> <byte offset> <bytes>: the range reads back as zeroes (direct I/O)
zeroes_at() {
  dd if="$1" iflag=direct,skip_bytes,count_bytes skip="$2" count="$3" bs=4096 2>/dev/null | cmp -s -n "$3" - /dev/zero
}

# --- bad input: a missing generic device, a block device; the malloc namespace still served -----------------
if start_tgt bad --malloc 64MiB --uring-cmd /dev/ng9n9 --uring-cmd /dev/$BLK --cores 1; then
  one_line bad.missing "$WORK/bad.log" /dev/ng9n9 "does not exist" "/dev/ngXnY"
  one_line bad.block "$WORK/bad.log" "/dev/$BLK" "is a block device" "$NG"
  perf_verify bad.malloc_served 4096
  stop_tgt bad
fi
# --- permission: user nobody cannot open the character device (0600 root) ---------------------------------
chmod 0777 "$WORK"
RUNAS="setpriv --reuid=nobody --regid=nogroup --clear-groups"
if start_tgt perm --malloc 64MiB --uring-cmd "$NG" --cores 1; then
  one_line perm.refused "$WORK/perm.log" "$NG" "reading and writing" "run as root"
  perf_verify perm.malloc_served 4096
  stop_tgt perm
fi
RUNAS=""

# --- the uring-cmd namespace: verify at 512 B, 4 KiB, 128 KiB ---------------------------------------------
if start_tgt uc --uring-cmd "$NG" --cores 0; then
  line=$(grep "uring-cmd $NG: nsid" "$WORK/uc.log")
  res uc.line "$line"
  case "$line" in *IOPOLL*) res uc.iopoll yes;; *) res uc.iopoll no;; esac
  case "$line" in *"fixed buffers"*) res uc.fixed yes;; *) res uc.fixed no;; esac
  case "$line" in *"NUMA node 1"*) res uc.node 1;; *) res uc.node "?";; esac
  for sz in 512 4096 131072; do perf_verify "uc.verify.$sz" $sz; done
  "$RS" trace --file "$WORK/ringside.uc" --describe --json >"$WORK/uc-describe.json" 2>"$WORK/uc-describe.err"
  jq -r '.description.subsystems[0].namespaces[0] | "backend=\(.backend)", "device=\(.device)",
      "device_path=\(.device_path)", "numa_node=\(.numa_node)", "block_size=\(.block_size)",
      "size_bytes=\(.size_bytes)", "queues=\([(.device_queues // [])[] | "\(.reactor):\(.qid)"] | join(","))"' \
    "$WORK/uc-describe.json" >"$WORK/uc-describe.kv" 2>>"$WORK/uc-describe.err"
  while IFS= read -r kv; do res "uc.describe.${kv%%=*}" "${kv#*=}"; done <"$WORK/uc-describe.kv"
  res uc.describe.abi "$(jq -r .abi "$WORK/uc-describe.json")"
  "$RS" trace --file "$WORK/ringside.uc" --describe 2>&1 | grep -E "reactor|nsid" | sed 's/^/  | /'

  # --- kernel initiator: Write Zeroes, deallocate, flush -------------------------------------------------
  if connect kernel.connect $ADDR $PORT "$NQN"; then
    lba=$(cat /sys/block/$(basename "$DEV")/queue/logical_block_size)
    res kernel.lba "$lba"
    dd if=/dev/urandom of="$WORK/pattern" bs=65536 count=1 2>/dev/null
    off=$((96 << 20))
    dd if="$WORK/pattern" of="$DEV" oflag=direct,seek_bytes seek=$off bs=65536 count=1 2>/dev/null
    if ! zeroes_at "$DEV" $((off + 16384)) 8192; then res kernel.written ok; else fail kernel.written "the pattern did not land"; fi
    nvme write-zeroes "$DEV" --start-block=$(( (off + 16384) / lba )) --block-count=$(( 8192 / lba - 1 )) \
      >"$WORK/wz.txt" 2>&1
    res kernel.write_zeroes.status $?
    if zeroes_at "$DEV" $((off + 16384)) 8192 && \
       dd if="$DEV" iflag=direct,skip_bytes skip=$off bs=16384 count=1 2>/dev/null | cmp -s -n 16384 - "$WORK/pattern"; then
      res kernel.write_zeroes ok
    else
      fail kernel.write_zeroes "the zeroed range does not read back as zeroes (or its neighbours changed)" "$WORK/wz.txt"
    fi
    off=$((100 << 20))
    dd if="$WORK/pattern" of="$DEV" oflag=direct,seek_bytes seek=$off bs=65536 count=1 2>/dev/null
    nvme dsm "$DEV" --ad --slbs=$(( (off + 32768) / lba )) --blocks=$(( 16384 / lba )) >"$WORK/dsm.txt" 2>&1
    res kernel.deallocate.status $?
    if zeroes_at "$DEV" $((off + 32768)) 16384; then res kernel.deallocate ok
    else fail kernel.deallocate "the deallocated range does not read back as zeroes" "$WORK/dsm.txt"; fi
    nvme flush "$DEV" >"$WORK/flush.txt" 2>&1 && res kernel.flush ok || fail kernel.flush "nvme flush failed" "$WORK/flush.txt"

    # --- a device status: DULBE on, read a block never written (the image is sparse beyond what was written).
    # Recorded, not required: QEMU 10.0 answers Set Features Error Recovery with Invalid Field.
    dmesg | grep -E 'nvme' | grep -iE 'timeout|timed out|reset|error|fail|abort' >"$WORK/dmesg-before-status.txt"
    res status.dmesg_before "$(wc -l <"$WORK/dmesg-before-status.txt")"
    [ -s "$WORK/dmesg-before-status.txt" ] && fail status.dmesg_before "NVMe problems before the status step" "$WORK/dmesg-before-status.txt"
    dmesg -C
    # Set Features (09h) Error Recovery (FID 05h) with DULBE (CDW11 bit 16), broadcast NSID
    if nvme admin-passthru "/dev/$CTRL" --opcode=0x09 --namespace-id=0xffffffff --cdw10=0x5 --cdw11=0x10000 \
        >"$WORK/dulbe.txt" 2>&1; then
      res status.dulbe_on ok
      unwritten=$((900 << 20))
      nvme read "$DEV" --start-block=$((unwritten / lba)) --block-count=0 --data-size=$lba --data=/dev/null \
        >"$WORK/status-read.txt" 2>&1
      res status.read.exit $?
      st=$(grep -o '(0x[0-9a-fA-F]*)' "$WORK/status-read.txt" | tail -n 1 | tr -d '()')
      res status.read "$st"
      # SCT 2h (media) / SC 87h (Deallocated or Unwritten Logical Block)
      if [ -n "$st" ] && [ $(( st & 0x7ff )) -eq $(( 0x287 )) ]; then res status.dulbe ok
      else fail status.dulbe "nvme read of an unwritten block gave '$st', not the controller's status 0x287" "$WORK/status-read.txt" "$WORK/uc.log"; fi
      tline=$(grep "the device answered" "$WORK/uc.log" | head -n 1)
      res status.target_line "$tline"
      case "$tline" in *"sc=0x87"*) res status.target_saw ok;; *) fail status.target_saw "the target did not log the device status" "$WORK/uc.log";; esac
      nvme admin-passthru "/dev/$CTRL" --opcode=0x09 --namespace-id=0xffffffff --cdw10=0x5 --cdw11=0 >"$WORK/dulbe-off.txt" 2>&1
      res status.dulbe_off $?
    else
      res status.dulbe_on "unsupported: $(head -n 1 "$WORK/dulbe.txt")"
    fi
    echo "kernel log of the status step (expected errors):"; dmesg | sed 's/^/  : /' | tail -n 20
    dmesg -C
    disconnect kernel.disconnect "$NQN"
  fi

  # --- diagnose: reactor on core 0 (node 0) serving the device on node 1 ----------------------------------
  # Deep enough that each 1 s window carries I/O under TCG (a few hundred IOPS at best).
  "$PERF" -r "$TRID" -q 64 -o 4096 -w randread --range 8MiB -t 60 --cores 2 >"$WORK/diag-load.log" 2>&1 &
  lpid=$!
  sleep 2
  "$RS" --file "$WORK/ringside.uc" diagnose --duration 15s --json >"$WORK/diag.json" 2>"$WORK/diag-agent.log"
  res diagnose.status $?
  kill $lpid 2>/dev/null; wait $lpid 2>/dev/null
  echo "diagnose findings:"; jq -c '.findings[] | [.kind, .subject, .summary]' "$WORK/diag.json" | sed 's/^/  | /'
  echo "diagnose topology and reactors:"
  jq -c '.topology.nodes | length' "$WORK/diag.json" | sed 's/^/  | nodes /'
  jq -c '.topology.pci[] | select(.block_devices | length > 0)' "$WORK/diag.json" | sed 's/^/  | /'
  jq -c '.overall.reactors[] | {index, core, node, completions, iops}' "$WORK/diag.json" | sed 's/^/  | /'
  sed 's/^/  | load: /' "$WORK/diag-load.log" | tail -n 5
  sed 's/^/  | agent: /' "$WORK/diag-agent.log" | tail -n 5
  f=$(jq -c '[.findings[] | select(.kind == "numa_misplacement" and .subject.type == "reactor" and .subject.index == 0)][0] // empty' "$WORK/diag.json")
  if [ -n "$f" ]; then res diagnose.numa_misplacement ok
  else fail diagnose.numa_misplacement "no numa_misplacement on reactor 0 (core 0, node 0) serving the node-1 device" "$WORK/diag.json" "$WORK/diag-agent.log"; fi
  res diagnose.summary "$(printf '%s' "$f" | jq -r .summary)"
  dname=$(sed -n 's/^device=//p' "$WORK/uc-describe.kv")
  printf '%s' "$f" | jq -r .summary | grep -q "device $dname is on node 1" && res diagnose.names_device ok \
    || fail diagnose.names_device "the finding does not name the device $dname on node 1" "$WORK/diag.json"

  # --- SIGKILL under load, start again on the same device ------------------------------------------------
  "$PERF" -r "$TRID" -q 16 -o 4096 -w randwrite --range 8MiB -t 30 --cores 2 >"$WORK/kill-load.log" 2>&1 &
  lpid=$!
  sleep 3
  kill -KILL $TPID; wait $TPID 2>/dev/null; TPID=""
  wait $lpid 2>/dev/null
  res restart.killed ok
  if start_tgt restart --uring-cmd "$NG" --cores 0; then
    perf_verify restart.verify 4096
    stop_tgt restart
  fi
fi
lab_finish
