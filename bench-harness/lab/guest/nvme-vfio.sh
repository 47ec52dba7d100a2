#!/bin/sh
# The nvme-vfio backend for real (runs inside the lab guest started with --pci/--nvme-img: an emulated NVMe
# controller, serial "lab", on NUMA node 1 behind intel-iommu). One boot checks:
#   notbound.*  the controller still bound to the kernel's nvme driver: ringside-tgt prints one line naming the
#               vfio-pci bind commands and still serves its malloc namespace (ringside-perf --verify on it)
#   nonviable.* (with run.sh --nvme-sibling) the controller on vfio-pci, its sibling function (serial lab2, same
#               IOMMU group) still on nvme: one line naming the sibling, the malloc namespace still served
#   bind.*      the controller (and its sibling) bound to vfio-pci (unbind, driver_override, drivers_probe)
#   verify.*    ringside-perf --verify through nvme-vfio at 512 B, 4 KiB and 128 KiB (a PRP list)
#   vfio.describe.*  the trace description: backend, the controller's PCI address, node 1, queue ids per reactor
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
  # the trace description: the device, its node, the reactor's (core 1) I/O queue id
  describe_ns vfio

  # --- kernel initiator: fio crc32c, Write Zeroes, deallocate ---------------------------------------------
  if connect kernel.connect $ADDR $PORT "$NQN"; then
    fio_verify kernel.fio.randwrite_4k "$DEV" --rw=randwrite --bs=4k --size=16M --offset=32M
    fio_verify kernel.fio.randwrite_mixed "$DEV" --rw=randwrite --bsrange=512-128k --size=16M --offset=64M
    zeroes_checks "$DEV"
    # A device status: QEMU fails reads of byte ERR_READ_AT (blkdebug); the host must get the controller's status.
    [ -n "$ERR_READ_AT" ] && read_error_status "$DEV" "$ERR_READ_AT"
    disconnect kernel.disconnect "$NQN"
  fi

  # --- SIGKILL under load, start again on the same device -------------------------------------------------
  kill_under_load 16MiB
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
