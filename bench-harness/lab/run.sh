#!/usr/bin/env bash
# Boots the lab guest (QEMU, stock Debian kernel, the host's root read-only over virtio-9p with a tmpfs
# overlay, no NIC), runs one command in it and exits with that command's exit status. See README.md.
#
# Usage: bench-harness/lab/run.sh [options] [--] command [args...]
#   Without a command: an interactive shell on the serial console (stdio).
# Options:
#   --timeout SECS      kill QEMU after SECS seconds (default $RINGSIDE_LAB_TIMEOUT or 900)
#   --out DIR           writable results share, mounted in the guest at the same path
#                       (default: a new dir under $RINGSIDE_LAB/runs); the guest command sees it as $RINGSIDE_LAB_OUT
#   --log FILE          serial console log (default: DIR/console.log)
#   --no-numa           one NUMA node (default: 2 nodes = 2 sockets x 2 cores, --mem-per-node each)
#   --mem-per-node SZ   guest RAM per node, e.g. 1G or 768M (default 1G)
#   --pci               PCIe extras: intel-iommu (intremap), a pxb-pcie bus bound to NUMA node 1, an emulated
#                       NVMe controller (serial "lab") behind a root port on it, null-backed 1 GiB
#   --nvme-img FILE     back that NVMe with a raw image file instead (implies --pci)
#   --nvme-blkdebug CONF  put QEMU's blkdebug error injection (a rules file) between that NVMe and its
#                       image (needs --nvme-img): the controller then fails the I/O the rules name
#   --nvme-sibling      a second NVMe controller (serial "lab2", null-backed 64 MiB) as function 1 of the same
#                       slot: both share one IOMMU group (no ACS), so one alone bound to vfio-pci is not viable
#   --accel auto|tcg|kvm  (default auto: TCG when /sys/module/kvm_pvm exists or the CPU has no vmx/svm)
#   --append ARGS       extra guest kernel command line
#   -e NAME=VALUE       export a variable to the guest command (repeatable)
#   -q, --quiet         do not stream the console to stdout (it is still logged)
#   --no-setup          do not run setup.sh first (it is quick when the lab is ready)
# Exit status: the guest command's (0..123; a guest status above 127 shows as 127), or
#   124 timed out (QEMU killed), 125 lab error (setup, QEMU start, guest init), 126 the guest stopped without
#   reporting a status (kernel panic, crash). The console log names the guest's own status (LAB_RC=...).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # depmod, modprobe, nvme live there; a user PATH may lack them

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB=${RINGSIDE_LAB:-/var/tmp/ringside-lab}
TIMEOUT=${RINGSIDE_LAB_TIMEOUT:-900}
OUT="" LOG="" NUMA=1 MEM=1G PCI=0 NVME_IMG="" NVME_BLKDEBUG="" NVME_SIBLING=0 ACCEL=auto APPEND="" QUIET=0 SETUP=1
ENVS=()

die() { echo "lab run: error: $*" >&2; exit 125; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; }

while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) TIMEOUT=${2:?}; shift 2;;
    --out) OUT=${2:?}; shift 2;;
    --log) LOG=${2:?}; shift 2;;
    --no-numa) NUMA=0; shift;;
    --mem-per-node) MEM=${2:?}; shift 2;;
    --pci) PCI=1; shift;;
    --nvme-img) NVME_IMG=${2:?}; PCI=1; shift 2;;
    --nvme-blkdebug) NVME_BLKDEBUG=${2:?}; shift 2;;
    --nvme-sibling) NVME_SIBLING=1; PCI=1; shift;;
    --accel) ACCEL=${2:?}; shift 2;;
    --append) APPEND=${2:?}; shift 2;;
    -e) ENVS+=("${2:?}"); shift 2;;
    -q|--quiet) QUIET=1; shift;;
    --no-setup) SETUP=0; shift;;
    -h|--help) usage;;
    --) shift; break;;
    -*) die "unknown option $1 (see --help)";;
    *) break;;
  esac
done

[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--timeout wants a positive number of seconds, not '$TIMEOUT'"
[[ "$MEM" =~ ^([1-9][0-9]*)([MG])$ ]] || die "--mem-per-node wants a size like 1G or 768M, not '$MEM'"
MEM_TOTAL=$(( BASH_REMATCH[1] * (NUMA + 1) ))${BASH_REMATCH[2]}
case "$ACCEL" in auto|tcg|kvm) ;; *) die "--accel wants auto, tcg or kvm, not '$ACCEL'";; esac
for e in "${ENVS[@]}"; do [[ "$e" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "-e wants NAME=VALUE, not '$e'"; done
case "$LAB$HERE" in *[[:space:]]*) die "the lab dir ($LAB) and the repo path ($HERE) must not contain whitespace";; esac

if [ $SETUP = 1 ]; then
  bash "$HERE/setup.sh" >&2 || die "lab setup failed (see above)"
fi
for f in vmlinux initrd.cpio KVER; do [ -s "$LAB/$f" ] || die "$LAB/$f missing: run bench-harness/lab/setup.sh"; done
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found: run bench-harness/lab/setup.sh"

mkdir -p "$LAB/runs"
# Keep a week of run dirs (console logs for post-mortems); older ones go.
find "$LAB/runs" -mindepth 1 -maxdepth 1 -type d -mtime +7 -exec rm -rf {} + 2>/dev/null || true
if [ -z "$OUT" ]; then
  OUT=$(mktemp -d "$LAB/runs/$(date +%Y%m%d-%H%M%S).XXXX")
fi
mkdir -p "$OUT" || die "cannot create results dir $OUT"
OUT=$(cd "$OUT" && pwd -P)
case "$OUT" in *[[:space:]]*) die "the results dir must not contain whitespace: '$OUT'";; esac
LOG=${LOG:-$OUT/console.log}
: > "$LOG" || die "cannot write console log $LOG"
if [ -n "$NVME_IMG" ]; then [ -f "$NVME_IMG" ] || die "--nvme-img $NVME_IMG: no such file"; fi
if [ -n "$NVME_BLKDEBUG" ]; then
  [ -n "$NVME_IMG" ] || die "--nvme-blkdebug needs --nvme-img"
  [ -f "$NVME_BLKDEBUG" ] || die "--nvme-blkdebug $NVME_BLKDEBUG: no such file"
  case "$NVME_BLKDEBUG$NVME_IMG" in *[:,]*) die "--nvme-blkdebug/--nvme-img paths must not contain ':' or ','";; esac
fi

# Accelerator. /dev/kvm on this machine kind is nested PVM (kvm_pvm): QEMU aborts or crawls with it.
if [ "$ACCEL" = auto ]; then
  if [ -e /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; else ACCEL=tcg; fi
fi
if [ "$ACCEL" = kvm ]; then ACC=(-accel kvm -cpu host); else ACC=(-accel tcg,thread=multi,tb-size=512 -cpu max); fi

# The command runs from a file in the results share: the kernel command line cannot hold it (size, spaces).
q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
{
  echo "# written by bench-harness/lab/run.sh; run by guest/stage2.sh"
  echo "export RINGSIDE_LAB=$(q "$LAB") RINGSIDE_LAB_OUT=$(q "$OUT")"
  for e in "${ENVS[@]}"; do echo "export ${e%%=*}=$(q "${e#*=}")"; done
  echo "cd $(q "$PWD") 2>/dev/null || cd /"
  if [ $# -gt 0 ]; then
    printf 'exec'; for a in "$@"; do printf ' %s' "$(q "$a")"; done; echo
  fi
} > "$OUT/lab-cmd.sh"
[ $# -gt 0 ] || rm -f "$OUT/lab-cmd.sh"

MACHINE=q35
QEMU=(qemu-system-x86_64 -nodefaults -no-user-config -no-reboot -display none -nic none -monitor none
      "${ACC[@]}" -device isa-debug-exit,iobase=0xf4,iosize=0x01
      -uuid "$(cat /proc/sys/kernel/random/uuid)")   # else DMI product_uuid, and so `nvme gen-hostnqn`, is all zeros
if [ $NUMA = 1 ]; then
  QEMU+=(-smp 4,sockets=2,cores=2,threads=1
         -object memory-backend-ram,id=m0,size=$MEM -object memory-backend-ram,id=m1,size=$MEM
         -numa node,nodeid=0,cpus=0-1,memdev=m0 -numa node,nodeid=1,cpus=2-3,memdev=m1 -m "$MEM_TOTAL")
else
  QEMU+=(-smp 4,sockets=1,cores=4,threads=1 -m "$MEM_TOTAL")
fi
if [ $PCI = 1 ]; then
  MACHINE=q35,kernel-irqchip=split
  APPEND="intel_iommu=on $APPEND"
  node=""; [ $NUMA = 1 ] && node=",numa_node=1"
  # discard=unmap: the controller's Dataset Management deallocate punches the image (QEMU's NVMe says
  # deallocated blocks read as zeroes, DLFEAT; with QEMU's default discard=ignore they would not).
  if [ -n "$NVME_BLKDEBUG" ]; then drive="file=blkdebug:$NVME_BLKDEBUG:$NVME_IMG,format=raw,discard=unmap"
  elif [ -n "$NVME_IMG" ]; then drive="file=$NVME_IMG,format=raw,discard=unmap"; else drive="driver=null-co,size=1G,read-zeroes=on"; fi
  QEMU+=(-device intel-iommu,intremap=on
         -device "pxb-pcie,id=pxb1,bus_nr=128,bus=pcie.0$node"
         -device pcie-root-port,id=rp1,bus=pxb1,chassis=1,slot=1
         -drive "$drive,if=none,id=nvm")
  if [ $NVME_SIBLING = 1 ]; then
    QEMU+=(-device nvme,serial=lab,drive=nvm,bus=rp1,addr=0.0,multifunction=on
           -drive driver=null-co,size=64M,read-zeroes=on,if=none,id=nvm2
           -device nvme,serial=lab2,drive=nvm2,bus=rp1,addr=0.1)
  else
    QEMU+=(-device nvme,serial=lab,drive=nvm,bus=rp1)
  fi
fi
QEMU+=(-machine "$MACHINE"
       -fsdev local,id=fsroot,path=/,security_model=none,readonly=on,multidevs=remap
       -device virtio-9p-pci,fsdev=fsroot,mount_tag=hostroot,bus=pcie.0
       -fsdev "local,id=fsout,path=$OUT,security_model=none"
       -device virtio-9p-pci,fsdev=fsout,mount_tag=labout,bus=pcie.0
       -kernel "$LAB/vmlinux" -initrd "$LAB/initrd.cpio"
       -append "console=ttyS0 panic=-1 quiet mitigations=off lab.kroot=$LAB/kroot lab.out=$OUT lab.stage2=$HERE/guest/stage2.sh $APPEND")

if [ $# -eq 0 ]; then
  # Interactive: the serial console on this terminal (Ctrl-A x quits QEMU).
  exec "${QEMU[@]}" -serial mon:stdio
fi

T0=$(date +%s.%N)
timeout -k 10 "$TIMEOUT" "${QEMU[@]}" -serial "file:$LOG" </dev/null >"$OUT/qemu.log" 2>&1 &
QPID=$!
trap 'kill $QPID 2>/dev/null; exit 130' INT TERM
TPID=""
if [ $QUIET = 0 ]; then tail -n +1 -F --pid=$QPID "$LOG" 2>/dev/null & TPID=$!; fi
set +e; wait $QPID; qrc=$?; set -e
trap - INT TERM
if [ -n "$TPID" ]; then wait "$TPID" 2>/dev/null || true; fi
secs=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
tail_log() { echo "lab run: last console lines ($LOG):" >&2; tail -n "${1:-25}" "$LOG" | sed 's/^/  | /' >&2; }

if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
  echo "lab run: error: guest timed out after $TIMEOUT s (QEMU killed); console log $LOG" >&2
  tail_log; exit 124
fi
# isa-debug-exit makes QEMU exit (status<<1)|1; QEMU's own errors exit 1 too, so also require the guest's marker.
if [ $((qrc & 1)) -eq 1 ] && grep -qE '^LAB_RC=|LAB_INIT_ERROR' "$LOG"; then
  rc=$((qrc >> 1))
  if [ $rc -eq 125 ] && grep -q LAB_INIT_ERROR "$LOG"; then
    echo "lab run: error: guest init failed: $(grep -m1 -o 'LAB_INIT_ERROR.*' "$LOG" | cut -d' ' -f2-)" >&2
    tail_log; exit 125
  fi
  echo "lab run: guest exited with status $rc after $secs s (console log $LOG)" >&2
  exit $rc
fi
if ! grep -q LAB_STAGE2_UP "$LOG" && [ -s "$OUT/qemu.log" ]; then
  msg=$(grep -m1 -iE "error|assert|fail" "$OUT/qemu.log" || grep -m1 -v "^$" "$OUT/qemu.log")
  echo "lab run: error: QEMU failed (exit $qrc): $msg" >&2; exit 125
fi
echo "lab run: error: guest stopped without reporting a status (QEMU exit $qrc: panic or crash?); console log $LOG" >&2
tail_log; exit 126
