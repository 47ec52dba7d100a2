#!/bin/sh
# Interop check (runs inside the lab guest): the Linux kernel NVMe/TCP initiator (nvme-tcp, nvme-cli, fio)
# against ringside-tgt. Two target runs on 127.0.0.1:4420 with one 256 MiB malloc namespace and the default NQN:
#   1. 512-byte blocks: discover, connect, id-ctrl, id-ns, fio crc32c verify (4k randwrite, mixed sizes, randrw),
#      disconnect; then a connect with header and data digests and a shorter verify; SIGTERM, exit status 0.
#   2. 4096-byte blocks: the same without the longer fio jobs and the digests; then nvme-cli (list-subsys, id-ctrl,
#      smart-log, error-log, get-feature -f 7), a namespace added through `ringside rpc` (the agent binary next to
#      ringside-tgt) appearing without a rescan, disconnect and reconnect; then a host that vanishes (loopback
#      down, no disconnect) has its controller freed by the keep-alive timeout (one log line, no queue listed).
# Results: LAB_RESULT lines (see lib-nvmf.sh), target.* keys for the target process itself.
# Usage (host): bench-harness/lab/run.sh -- bench-harness/lab/guest/nvmf-tcp-kernel-initiator.sh \
#                 <path to ringside-tgt> [extra ringside-tgt args...]
# Env: TGT_CORES (reactor core list in the guest, default 1), FIO_ENGINE (io_uring | libaio).
. "$(dirname "$0")/lib-nvmf.sh"
TGT=${1:?usage: nvmf-tcp-kernel-initiator.sh <ringside-tgt> [extra args]}; shift
ADDR=127.0.0.1 PORT=4420 SZ=$((256 << 20))
CORES=${TGT_CORES:-1}

[ -x "$TGT" ] || { fail target "ringside-tgt not found or not executable: $TGT"; lab_finish; exit; }
modprobe nvme-tcp || { fail target "modprobe nvme-tcp failed"; lab_finish; exit; }
res target.binary "$TGT"

# The NQN the target will serve with these flags (its own --check output, so the default NQN is not repeated here).
tgt_args() { echo "--listen $ADDR:$PORT --malloc 256MiB --block-size $1 --cores $CORES"; }
NQN=$("$TGT" $(tgt_args 512) "$@" --check 2>"$WORK/check.err" | sed -n 's/^nqn = "\(.*\)"$/\1/p' | head -n 1)
[ -n "$NQN" ] || { fail target.check "ringside-tgt --check printed no subsystem NQN" "$WORK/check.err"; lab_finish; exit; }
res target.nqn "$NQN"

TPID=""
# start_target <key> <block size> [args]: starts ringside-tgt in the background and waits until it listens.
start_target() {
  local key=$1 bs=$2 i; shift 2
  "$TGT" $(tgt_args "$bs") "$@" >"$WORK/tgt-$bs.log" 2>&1 &
  TPID=$!
  for i in $(seq 1 300); do
    if ! kill -0 $TPID 2>/dev/null; then
      wait $TPID; fail "$key" "ringside-tgt exited with status $? before listening" "$WORK/tgt-$bs.log"; TPID=""; return 1
    fi
    ss -ltnH "sport = :$PORT" 2>/dev/null | grep -q LISTEN && break
    sleep 0.1
  done
  ss -ltnH "sport = :$PORT" | grep -q LISTEN || { fail "$key" "ringside-tgt is not listening on $ADDR:$PORT after 30 s" "$WORK/tgt-$bs.log"; return 1; }
  res "$key.pid" $TPID
  res "$key" ok
}
# stop_target <key> <block size>: SIGTERM, then the target must exit with status 0 within 30 s.
stop_target() {
  local key=$1 bs=$2 i rc
  [ -n "$TPID" ] || return 1
  # a step that failed half-way may have left a controller behind: it would reconnect to the next target
  nvme disconnect -n "$NQN" >/dev/null 2>&1
  kill -TERM $TPID
  for i in $(seq 1 300); do kill -0 $TPID 2>/dev/null || break; sleep 0.1; done
  if kill -0 $TPID 2>/dev/null; then
    fail "$key" "ringside-tgt still running 30 s after SIGTERM" "$WORK/tgt-$bs.log"; kill -KILL $TPID; wait $TPID; TPID=""; return 1
  fi
  wait $TPID; rc=$?; TPID=""
  echo "ringside-tgt ($bs-byte blocks) log:"; sed 's/^/  | /' "$WORK/tgt-$bs.log"
  res "$key.status" $rc
  [ $rc -eq 0 ] || { fail "$key" "ringside-tgt exited with status $rc after SIGTERM" "$WORK/tgt-$bs.log"; return 1; }
  res "$key" ok
}

# --- 1. 512-byte blocks, full suite, then digests --------------------------------------------------------------
if start_target target.start512 512 "$@"; then
  verify_suite lba512 $ADDR $PORT "$NQN" $SZ 512 full
  if connect digest.connect $ADDR $PORT "$NQN" -g -G; then
    fio_verify digest.fio.randwrite_4k "$DEV" --rw=randwrite --bs=4k --size=8M --offset=192M
    fio_verify digest.fio.randwrite_mixed "$DEV" --rw=randwrite --bsrange=512-128k --size=8M --offset=200M
    disconnect digest.disconnect "$NQN"
  fi
  stop_target target.stop512 512
fi

# nsid_dev <nsid>: the block device of namespace <nsid> of $NQN (empty when there is none).
nsid_dev() {
  local b
  for b in /sys/block/nvme*n*; do
    [ -e "$b/device/subsysnqn" ] && [ "$(cat "$b/device/subsysnqn")" = "$NQN" ] || continue
    # (with native multipath the per-path disks nvmeXcYnZ have no /dev node: skip them)
    [ "$(cat "$b/nsid" 2>/dev/null)" = "$1" ] && [ -b "/dev/$(basename "$b")" ] && { echo "/dev/$(basename "$b")"; return; }
  done
}

# cli_run <key> <file> <cmd...>: runs an nvme-cli command, keeps its output, ok when it exits 0.
cli_run() {
  local key=$1 out=$2; shift 2
  if timeout 60 "$@" >"$out" 2>&1; then res "$key" ok; else fail "$key" "$* failed" "$out"; return 1; fi
}

# --- nvme-cli: list-subsys, id-ctrl, smart-log, error-log, get-feature -f 7 (number of queues), a namespace
# added through `ringside rpc` appearing on the host without a rescan, disconnect and reconnect.
nvme_cli_suite() {
  local rpc p=cli i d
  rpc=$(dirname "$TGT")/ringside
  [ -x "$rpc" ] || { fail $p.rpc "ringside (the agent) not found next to $TGT"; return 1; }
  connect $p.connect $ADDR $PORT "$NQN" || return 1
  cli_run $p.list_subsys "$WORK/ls.txt" nvme list-subsys && cat "$WORK/ls.txt" \
    && res $p.list_subsys.nqn "$(grep -o "$NQN" "$WORK/ls.txt" | head -n 1)"
  cli_run $p.id_ctrl "$WORK/idc.txt" nvme id-ctrl "/dev/$CTRL" \
    && res $p.id_ctrl.oaes "$(sed -n 's/^oaes *: *//p' "$WORK/idc.txt")"
  cli_run $p.smart_log "$WORK/smart.txt" nvme smart-log "/dev/$CTRL" && cat "$WORK/smart.txt"
  cli_run $p.error_log "$WORK/elog.txt" nvme error-log "/dev/$CTRL" -e 1
  cli_run $p.get_feature7 "$WORK/f7.txt" nvme get-feature "/dev/$CTRL" -f 7 && cat "$WORK/f7.txt" \
    && res $p.get_feature7.value "$(sed -n 's/.*Current value:[ ]*\(0x[0-9a-fA-F]*\).*/\1/p' "$WORK/f7.txt" | head -n 1)"
  # a namespace added at run time: the AEN makes the kernel rescan by itself
  cli_run $p.add_ns "$WORK/addns.txt" "$rpc" rpc nvmf_subsystem_add_ns \
    "{\"nqn\": \"$NQN\", \"namespace\": {\"backend\": \"malloc\", \"size\": \"16MiB\", \"block_size\": 4096}}" \
    && res $p.add_ns.nsid "$(tr -d ' \n' <"$WORK/addns.txt")"
  d=""
  for i in $(seq 1 300); do d=$(nsid_dev 2); [ -n "$d" ] && [ -b "$d" ] && break; d=""; sleep 0.1; done
  if [ -n "$d" ]; then
    res $p.new_ns ok
    res $p.new_ns.bytes "$(blockdev --getsize64 "$d")"
  else
    fail $p.new_ns "namespace 2 did not appear within 30 s of nvmf_subsystem_add_ns (no rescan was run)"
  fi
  disconnect $p.disconnect "$NQN"
  connect $p.reconnect $ADDR $PORT "$NQN" || return 1
  res $p.reconnect.namespaces "$(for b in /sys/block/nvme*n*; do cat "$b/nsid"; done | sort -un | tr '\n' ' ' | sed 's/ $//')"
  disconnect $p.redisconnect "$NQN"
}

# --- keep-alive: a host that vanishes (no disconnect: the loopback link goes down, so none of its traffic arrives)
# has its controller freed by the target's keep-alive timeout: exactly one target log line, and
# nvmf_subsystem_get_qpairs no longer lists its queues. Runs last: the kernel then logs keep-alive failures and
# reconnect attempts, so dmesg_check only counts what came before this step's mark.
# keep_alive_suite <target log>
keep_alive_suite() {
  local log=$1 rpc p=ka i n0 n left
  rpc=$(dirname "$TGT")/ringside
  [ -x "$rpc" ] || { fail $p.rpc "ringside (the agent) not found next to $TGT"; return 1; }
  # keep-alive timeout 3 s; the host retries every 2 s and gives the controller up after 6 s
  connect $p.connect $ADDR $PORT "$NQN" -k 3 -c 2 -l 6 || return 1
  "$rpc" rpc nvmf_subsystem_get_qpairs "{\"nqn\": \"$NQN\"}" >"$WORK/qp-before.txt" 2>&1
  res $p.qpairs_before "$(grep -c '"qid"' "$WORK/qp-before.txt")"
  n0=$(grep -c 'keep-alive expired' "$log")
  DMESG_MARK="lab: keep-alive step"
  echo "$DMESG_MARK: loopback down" >/dev/kmsg
  ip link set lo down
  for i in $(seq 1 600); do [ "$(grep -c 'keep-alive expired' "$log")" -gt "$n0" ] && break; sleep 0.1; done
  # (the RPC socket is a unix socket: it does not need the loopback link)
  "$rpc" rpc nvmf_subsystem_get_qpairs "{\"nqn\": \"$NQN\"}" >"$WORK/qp-after.txt" 2>&1
  ip link set lo up
  n=$(( $(grep -c 'keep-alive expired' "$log") - n0 ))
  left=$(grep -c '"qid"' "$WORK/qp-after.txt")
  res $p.log_lines $n
  res $p.qpairs_after "$left"
  grep 'keep-alive expired' "$log" | tail -n 1
  if [ "$n" -eq 1 ] && [ "$left" = 0 ]; then
    res $p ok
  else
    fail $p "after the host vanished: $n keep-alive log lines (want 1), $left queues still listed (want 0)" \
      "$WORK/qp-after.txt" "$log"
  fi
  # the host may still be retrying: make sure it is gone before the target stops
  nvme disconnect -n "$NQN" >/dev/null 2>&1
}

# --- 2. 4096-byte blocks, then nvme-cli, then the keep-alive timeout ----------------------------------------------
if start_target target.start4096 4096 "$@"; then
  verify_suite lba4096 $ADDR $PORT "$NQN" $SZ 4096 short
  nvme_cli_suite
  keep_alive_suite "$WORK/tgt-4096.log"
  stop_target target.stop4096 4096
fi
lab_finish
