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
#   status.*    (with run.sh --nvme-blkdebug: reads of byte ERR_READ_AT fail in QEMU) the controller's status for
#               that read reaches the kernel host unchanged (nvme read: Unrecovered Read Error, SCT 2h SC 81h),
#               the target logs it, and a neighbouring block still reads
#   diagnose.*  `ringside diagnose` names the device and its node 1 and raises numa_misplacement for reactor 0
#   restart.*   SIGKILL under load, start again on the same device, verify again
# Usage (host): bench-harness/lab/run.sh --nvme-img IMG --append nvme.poll_queues=1 \
#                 [--nvme-blkdebug CONF -e ERR_READ_AT=BYTES] -- \
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

# one_line <key> <log> <pattern...>: exactly one "not served" line, holding every pattern
one_line() {
  local key=$1 log=$2 l p; shift 2
  l=$(grep "not served" "$log" | grep -F "$1")
  res "$key.line" "$l"
  [ "$(printf '%s\n' "$l" | grep -c .)" = 1 ] || { fail "$key" "expected one 'not served' line for $1" "$log"; return 1; }
  for p in "$@"; do printf '%s' "$l" | grep -qF -- "$p" || { fail "$key" "the line does not say '$p'" "$log"; return 1; }; done
  res "$key" ok
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
  describe_ns uc

  # --- kernel initiator: Write Zeroes, deallocate, flush -------------------------------------------------
  if connect kernel.connect $ADDR $PORT "$NQN"; then
    zeroes_checks "$DEV"
    nvme flush "$DEV" >"$WORK/flush.txt" 2>&1 && res kernel.flush ok || fail kernel.flush "nvme flush failed" "$WORK/flush.txt"
    # --- a device status: QEMU fails reads of byte ERR_READ_AT (blkdebug); the guest's nvme driver hands the
    # controller's status to the target in the passthrough CQE, the target to the host unchanged.
    if [ -n "$ERR_READ_AT" ]; then
      read_error_status "$DEV" "$ERR_READ_AT"
      tline=$(grep "the device answered" "$WORK/uc.log" | head -n 1)
      res status.target_line "$tline"
      case "$tline" in *"sct=0x2 sc=0x81"*) res status.target_saw ok;;
        *) fail status.target_saw "the target did not log the device's Unrecovered Read Error" "$WORK/uc.log";; esac
    fi
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
  kill_under_load 8MiB
  if start_tgt restart --uring-cmd "$NG" --cores 0; then
    perf_verify restart.verify 4096
    stop_tgt restart
  fi
fi
lab_finish
