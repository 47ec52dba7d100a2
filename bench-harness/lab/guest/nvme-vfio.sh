#!/bin/sh
# The nvme-vfio backend for real (runs inside the lab guest started with --pci/--nvme-img: an emulated NVMe
# controller, serial "lab", on NUMA node 1 behind intel-iommu). One boot checks:
#   notbound.*  the controller still bound to the kernel's nvme driver: ringside-tgt prints one line naming the
#               vfio-pci bind commands and still serves its malloc namespace (ringside-perf --verify on it)
#   nonviable.* (with run.sh --nvme-sibling) the controller on vfio-pci, its sibling function (serial lab2, same
#               IOMMU group) still on nvme: one line naming the sibling, the malloc namespace still served
#   bind.*      the controller (and its sibling) bound to vfio-pci (unbind, driver_override, drivers_probe)
#   verify.*    ringside-perf --verify through nvme-vfio at 512 B, 4 KiB and 128 KiB (a PRP list)
#   kernel.*    the kernel initiator (nvme-tcp over loopback) with fio --verify=crc32c on the namespace,
#               Write Zeroes and Dataset Management deallocate read back as zeroes (nvme-cli, dd)
#   status.*    (with run.sh --nvme-blkdebug: reads of byte ERR_READ_AT fail in QEMU) the controller's status for
#               that read reaches the kernel host unchanged (nvme read: Unrecovered Read Error, SCT 2h SC 81h)
#   restart.*   SIGKILL the target under load, start it again on the same device: it resets the controller
#               and serves data written before the kill
#   diagnose.*  `ringside diagnose` names the device and its node 1 and raises numa_misplacement for the
#               reactor on core 0 (node 0)
#   stop.*      SIGTERM: exit status 0 (the controller is shut down with CC.SHN)
# Usage (host): bench-harness/lab/run.sh --nvme-img IMG [--nvme-sibling] [--nvme-blkdebug CONF -e ERR_READ_AT=BYTES] \
#                 -- bench-harness/lab/guest/nvme-vfio.sh <ringside-tgt> <ringside-perf> <ringside>
. "$(dirname "$0")/lib-nvmf.sh"
TGT=${1:?usage: nvme-vfio.sh <ringside-tgt> <ringside-perf> <ringside>}; PERF=${2:?}; RS=${3:?}
ADDR=127.0.0.1 PORT=4420
NQN=nqn.2026-11.io.ringside:nvme0
TRID="trtype:tcp adrfam:ipv4 traddr:$ADDR trsvcid:$PORT subnqn:$NQN"

modprobe nvme; modprobe nvme-tcp; modprobe vfio-pci
# A heartbeat on the console: a guest that stops printing it is frozen, not slow.
(while :; do echo "LAB_HEARTBEAT uptime=$(cut -d' ' -f1 /proc/uptime)"; sleep 30; done) &
BDF=""
for i in $(seq 1 300); do
  for c in /sys/class/nvme/nvme*; do
    [ "$(tr -d ' ' <"$c/serial" 2>/dev/null)" = lab ] && BDF=$(basename "$(readlink -f "$c/device")")
  done
  [ -n "$BDF" ] && break; sleep 0.1
done
[ -n "$BDF" ] || { fail nvme.bdf "no emulated NVMe controller with serial 'lab' (boot with --pci)"; lab_finish; exit; }
res nvme.bdf "$BDF"
res nvme.numa_node "$(cat /sys/bus/pci/devices/$BDF/numa_node)"
GROUP=$(basename "$(readlink -f /sys/bus/pci/devices/$BDF/iommu_group)")
res nvme.iommu_group "$GROUP"
res nvme.group_devices "$(ls /sys/kernel/iommu_groups/$GROUP/devices | tr '\n' ' ')"
# The sibling function (run.sh --nvme-sibling), if any.
SIB=""
for c in /sys/class/nvme/nvme*; do
  [ "$(tr -d ' ' <"$c/serial" 2>/dev/null)" = lab2 ] && SIB=$(basename "$(readlink -f "$c/device")")
done
res nvme.sibling "${SIB:-none}"
# What the controller says of deallocated blocks (DLFEAT), read through the kernel driver before binding.
ns0=$(ls -d /sys/bus/pci/devices/$BDF/nvme/nvme*/nvme*n1 2>/dev/null | head -n 1)
[ -n "$ns0" ] && res nvme.dlfeat "$(nvme id-ns /dev/$(basename "$ns0") -o json 2>/dev/null | jq -r .dlfeat)"
# bind_vfio <bdf>: unbind from its driver, bind to vfio-pci
bind_vfio() {
  [ -e /sys/bus/pci/devices/$1/driver ] && echo "$1" > /sys/bus/pci/devices/$1/driver/unbind
  echo vfio-pci > /sys/bus/pci/devices/$1/driver_override
  echo "$1" > /sys/bus/pci/drivers_probe
  basename "$(readlink -f /sys/bus/pci/devices/$1/driver)"
}

TPID=""
# start_tgt <key> [args]: ringside-tgt in the background, waits until it listens; its log is $WORK/<key>.log
start_tgt() {
  local key=$1 i; shift
  "$TGT" --listen $ADDR:$PORT --name "$key" --trace-dir "$WORK" "$@" >"$WORK/$key.log" 2>&1 &
  TPID=$!
  for i in $(seq 1 600); do
    if ! kill -0 $TPID 2>/dev/null; then
      wait $TPID; fail "$key.start" "ringside-tgt exited with status $? before listening" "$WORK/$key.log"; TPID=""; return 1
    fi
    ss -ltnH "sport = :$PORT" 2>/dev/null | grep -q LISTEN && { res "$key.start" ok; return 0; }
    sleep 0.1
  done
  fail "$key.start" "not listening after 60 s" "$WORK/$key.log"; return 1
}
# proc_state <pid>: where a process is stuck (for the log)
proc_state() {
  echo "process $1: $(tr '\0' ' ' </proc/$1/cmdline 2>/dev/null | cut -c1-80)"
  for t in /proc/$1/task/*; do
    echo "  task $(basename $t) $(cat $t/comm 2>/dev/null) state=$(awk '/^State/{print $2}' $t/status 2>/dev/null) wchan=$(cat $t/wchan 2>/dev/null)"
    sed 's/^/    /' $t/stack 2>/dev/null | head -n 12
  done
  dmesg | tail -n 15 | sed 's/^/  dmesg: /'
}
# stop_tgt <key>: SIGTERM, exit status 0 within 60 s
stop_tgt() {
  local key=$1 i rc
  [ -n "$TPID" ] || return 1
  kill -TERM $TPID
  for i in $(seq 1 600); do
    kill -0 $TPID 2>/dev/null || break
    [ $i = 100 ] && { echo "$key: still running 10 s after SIGTERM:"; proc_state $TPID; tail -n 5 "$WORK/$key.log"; }
    sleep 0.1
  done
  if kill -0 $TPID 2>/dev/null; then
    proc_state $TPID
    fail "$key.stop" "still running 60 s after SIGTERM" "$WORK/$key.log"; kill -KILL $TPID; TPID=""; return 1
  fi
  wait $TPID; rc=$?; TPID=""
  echo "ringside-tgt ($key) log:"; sed 's/^/  | /' "$WORK/$key.log"
  res "$key.stop.status" $rc
  [ $rc -eq 0 ] && res "$key.stop" ok || fail "$key.stop" "exit status $rc after SIGTERM" "$WORK/$key.log"
}
# perf_verify <key> <io size> [perf args]: ringside-perf --verify must exit 0 having checked blocks. The working
# set (prefilled first) is 2048 I/Os of the size at most, so small sizes stay quick under TCG.
perf_verify() {
  local key=$1 sz=$2 rc checked range; shift 2
  range=$((sz * 2048)); [ $range -gt $((16 << 20)) ] && range=$((16 << 20))
  timeout 900 "$PERF" -r "$TRID" -q 8 -o "$sz" -w randrw --verify --range $range -t 3 --io-limit 2000 --cores 2 \
    --json "$@" >"$WORK/$key.json" 2>"$WORK/$key.err"
  rc=$?
  checked=$(jq -r '.verify.checked_blocks // 0' "$WORK/$key.json" 2>/dev/null)
  res "$key.status" $rc
  res "$key.checked_blocks" "${checked:-0}"
  if [ $rc -eq 0 ] && [ "${checked:-0}" -gt 0 ]; then res "$key" ok
  else fail "$key" "ringside-perf --verify -o $sz exited $rc having checked ${checked:-0} blocks" "$WORK/$key.err" "$WORK/$key.json"; fi
}
# zeroes_at <dev> <byte offset> <bytes>: the range reads back as zeroes (direct I/O)
zeroes_at() {
  dd if="$1" iflag=direct,skip_bytes,count_bytes skip="$2" count="$3" bs=4096 2>/dev/null | cmp -s -n "$3" - /dev/zero
}

# --- bad input: still bound to the kernel's nvme driver ---------------------------------------------------
res notbound.driver "$(basename "$(readlink -f /sys/bus/pci/devices/$BDF/driver)")"
if start_tgt notbound --malloc 64MiB --nvme-vfio "$BDF" --cores 1; then
  line=$(grep -c "nvme-vfio $BDF" "$WORK/notbound.log")
  res notbound.lines "$line"
  if [ "$line" = 1 ] && grep -q "not vfio-pci" "$WORK/notbound.log" && grep -q "driver_override" "$WORK/notbound.log"; then
    res notbound.message ok
  else
    fail notbound.message "expected one line naming the vfio-pci bind commands" "$WORK/notbound.log"
  fi
  perf_verify notbound.malloc_served 4096
  stop_tgt notbound
fi

# --- bind to vfio-pci (with a sibling in the group: first alone, which leaves the group not viable) ------
drv=$(bind_vfio "$BDF")
res bind.driver "$drv"
if [ -n "$SIB" ]; then
  if start_tgt nonviable --malloc 64MiB --nvme-vfio "$BDF" --cores 1; then
    line=$(grep -c "nvme-vfio $BDF" "$WORK/nonviable.log")
    res nonviable.lines "$line"
    if [ "$line" = 1 ] && grep -q "not viable" "$WORK/nonviable.log" && grep -q "$SIB (nvme)" "$WORK/nonviable.log"; then
      res nonviable.message ok
    else
      fail nonviable.message "expected one line naming the group's other device $SIB (nvme)" "$WORK/nonviable.log"
    fi
    perf_verify nonviable.malloc_served 4096
    stop_tgt nonviable
  fi
  res bind.sibling_driver "$(bind_vfio "$SIB")"
fi
[ "$drv" = vfio-pci ] && res bind ok || fail bind "the controller is bound to '$drv' after the bind commands"
echo 64 > /proc/sys/vm/nr_hugepages 2>/dev/null
res bind.hugepages "$(cat /proc/sys/vm/nr_hugepages)"

# --- ringside-perf --verify through nvme-vfio --------------------------------------------------------------
if start_tgt vfio --nvme-vfio "$BDF" --cores 1; then
  for sz in 512 4096 131072; do perf_verify "verify.$sz" $sz; done

  # --- kernel initiator: fio crc32c, Write Zeroes, deallocate ---------------------------------------------
  if connect kernel.connect $ADDR $PORT "$NQN"; then
    fio_verify kernel.fio.randwrite_4k "$DEV" --rw=randwrite --bs=4k --size=16M --offset=32M
    fio_verify kernel.fio.randwrite_mixed "$DEV" --rw=randwrite --bsrange=512-128k --size=16M --offset=64M
    lba=$(cat /sys/block/$(basename "$DEV")/queue/logical_block_size)
    res kernel.lba "$lba"
    # Write Zeroes: 64 KiB of random data at 96 MiB, then zero 8 KiB in its middle.
    off=$((96 << 20))
    dd if=/dev/urandom of="$WORK/pattern" bs=65536 count=1 2>/dev/null
    dd if="$WORK/pattern" of="$DEV" oflag=direct,seek_bytes seek=$off bs=65536 count=1 2>/dev/null
    nvme write-zeroes "$DEV" --start-block=$(( (off + 16384) / lba )) --block-count=$(( 8192 / lba - 1 )) \
      >"$WORK/wz.txt" 2>&1
    res kernel.write_zeroes.status $?
    if zeroes_at "$DEV" $((off + 16384)) 8192 && \
       dd if="$DEV" iflag=direct,skip_bytes skip=$off bs=16384 count=1 2>/dev/null | cmp -s -n 16384 - "$WORK/pattern"; then
      res kernel.write_zeroes ok
    else
      fail kernel.write_zeroes "the zeroed range does not read back as zeroes (or its neighbours changed)" "$WORK/wz.txt"
    fi
    # Deallocate: 64 KiB of random data at 100 MiB, then deallocate 16 KiB of it.
    off=$((100 << 20))
    dd if="$WORK/pattern" of="$DEV" oflag=direct,seek_bytes seek=$off bs=65536 count=1 2>/dev/null
    nvme dsm "$DEV" --ad --slbs=$(( (off + 32768) / lba )) --blocks=$(( 16384 / lba )) >"$WORK/dsm.txt" 2>&1
    res kernel.deallocate.status $?
    if zeroes_at "$DEV" $((off + 32768)) 16384; then res kernel.deallocate ok
    else fail kernel.deallocate "the deallocated range does not read back as zeroes" "$WORK/dsm.txt"; fi
    # A device status: QEMU fails reads of byte ERR_READ_AT (blkdebug); the host must get the controller's status.
    if [ -n "$ERR_READ_AT" ]; then
      nvme read "$DEV" --start-block=$((ERR_READ_AT / lba)) --block-count=0 --data-size=$lba --data=/dev/null \
        >"$WORK/status-read.txt" 2>&1
      res status.read.exit $?
      st=$(grep -o '(0x[0-9a-fA-F]*)' "$WORK/status-read.txt" | tail -n 1 | tr -d '()')
      res status.read "$st"
      # SCT 2h (media) / SC 81h (Unrecovered Read Error), whatever CRD/More/DNR bits the controller set
      if [ -n "$st" ] && [ $(( st & 0x7ff )) -eq $(( 0x281 )) ]; then res status.read_error ok
      else fail status.read_error "nvme read of the failing block gave '$st', not the controller's Unrecovered Read Error" "$WORK/status-read.txt"; fi
      # a neighbouring block still reads
      nvme read "$DEV" --start-block=$((ERR_READ_AT / lba + 8)) --block-count=0 --data-size=$lba --data=/dev/null \
        >"$WORK/status-ok.txt" 2>&1 && res status.neighbour ok || fail status.neighbour "a block next to the failing one does not read" "$WORK/status-ok.txt"
    fi
    disconnect kernel.disconnect "$NQN"
  fi

  # --- SIGKILL under load, start again on the same device -------------------------------------------------
  "$PERF" -r "$TRID" -q 16 -o 4096 -w randwrite --range 16MiB -t 30 --cores 2 >"$WORK/kill-load.log" 2>&1 &
  lpid=$!
  sleep 3
  kill -KILL $TPID; wait $TPID 2>/dev/null; TPID=""
  wait $lpid 2>/dev/null
  res restart.killed ok
  if start_tgt restart --nvme-vfio "$BDF" --cores 1; then
    grep -q "left enabled" "$WORK/restart.log" && res restart.reset_logged ok || res restart.reset_logged no
    # The data fio wrote and verified before the kill is still there.
    if connect restart.connect $ADDR $PORT "$NQN"; then
      if dd if="$DEV" iflag=direct,skip_bytes skip=$((96 << 20)) bs=16384 count=1 2>/dev/null | cmp -s -n 16384 - "$WORK/pattern"; then
        res restart.data ok
      else
        fail restart.data "data written before the SIGKILL does not read back after the restart"
      fi
      disconnect restart.disconnect "$NQN"
    fi
    perf_verify restart.verify 4096
    # The clean stop (SIGTERM, CC.SHN) is checked last, on the diag target; this one goes like the first.
    kill -KILL $TPID; wait $TPID 2>/dev/null; TPID=""
  fi
fi

# --- the agent: device, node 1, numa_misplacement for the reactor on core 0 (node 0) ------------------------
if start_tgt diag --nvme-vfio "$BDF" --cores 0; then
  "$PERF" -r "$TRID" -q 8 -o 4096 -w randread --range 128MiB -t 90 --cores 2 >"$WORK/diag-perf.log" 2>&1 &
  ppid=$!
  # Diagnose once the load runs (TCG on a busy host: connecting takes a while).
  for i in $(seq 1 300); do ss -tnH "dport = :$PORT" 2>/dev/null | grep -q ESTAB && break; sleep 0.1; done
  sleep 5
  "$RS" --file "$WORK/ringside.diag" diagnose --duration 20s --json >"$WORK/diag.json" 2>"$WORK/diag-agent.log"
  res diagnose.status $?
  kill $ppid 2>/dev/null; wait $ppid 2>/dev/null
  echo "diagnose findings:"; jq -c '.findings[] | [.kind, .subject, .summary]' "$WORK/diag.json" | sed 's/^/  | /'
  echo "diagnose overall / topology:"; jq -c '.overall' "$WORK/diag.json" | cut -c1-800 | sed 's/^/  | /'
  jq -c '[.. | objects | select(.bdf? != null)] | .[0:6]' "$WORK/diag.json" 2>/dev/null | cut -c1-800 | sed 's/^/  | /'
  tail -n 5 "$WORK/diag-perf.log" | sed 's/^/  perf: /'
  if jq -e --arg bdf "$BDF" '.findings[] | select(.kind == "numa_misplacement" and .subject.type == "reactor"
        and .subject.index == 0 and (tostring | contains($bdf)) and (tostring | test("node 1")))' \
       "$WORK/diag.json" >/dev/null; then
    res diagnose.numa_misplacement ok
  else
    fail diagnose.numa_misplacement "no numa_misplacement on reactor 0 naming $BDF on node 1" "$WORK/diag.json" "$WORK/diag-agent.log"
  fi
  stop_tgt diag
  # After a clean stop the controller works again (a new start, one verified pass).
  if start_tgt after_stop --nvme-vfio "$BDF" --cores 1; then
    perf_verify after_stop.verify 4096
    stop_tgt after_stop
  fi
fi
lab_finish
