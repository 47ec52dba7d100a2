# Shared steps of the NVMe-oF lab checks (sourced by the guest scripts; runs inside the lab guest as root).
# Each step prints machine-readable lines, one fact per line, values running to the end of the line:
#   LAB_RESULT <key>=<value>      e.g. "LAB_RESULT lba512.discover=ok", "LAB_RESULT lba512.id_ctrl.mn=ringside"
#   LAB_ERROR <key>: <why>        on failure, followed by the evidence (command output, dmesg tail)
# A step that fails sets FAILED=1 and the script carries on where that still makes sense, so one boot reports
# every failure; `lab_finish` prints "LAB_RESULT all=ok|fail" and returns the exit status.

FAILED=0
HOSTNQN=${HOSTNQN:-$(nvme gen-hostnqn 2>/dev/null || echo nqn.2014-08.org.nvmexpress:uuid:0c0ffee0-0000-4000-8000-00000000lab1)}
HOSTID=$(printf '%s' "$HOSTNQN" | sed -n 's/.*uuid:\([0-9a-f-]*\)$/\1/p')
WORK=${LAB_WORK:-/tmp/lab-nvmf}
mkdir -p "$WORK"

res() {
  echo "LAB_RESULT $1=$2"
  # guest uptime at each step's verdict, to see where a (TCG-slow) run spends its time
  case $2 in ok|fail) echo "LAB_TIME $1 uptime=$(cut -d' ' -f1 /proc/uptime)";; esac
}
fail() {   # fail <key> <why> [evidence file...]
  local key=$1 why=$2; shift 2
  echo "LAB_RESULT $key=fail"
  echo "LAB_ERROR $key: $why"
  for f in "$@"; do [ -s "$f" ] && head -n 40 "$f" | sed 's/^/  | /'; done
  echo "  | dmesg tail:"; dmesg | tail -n 25 | sed 's/^/  | /'
  FAILED=1
}

# discover <key> <addr> <port> <nqn>: the discovery log page must list <nqn> at <addr>:<port>.
discover() {
  local key=$1 addr=$2 port=$3 nqn=$4
  if ! timeout 60 nvme discover -t tcp -a "$addr" -s "$port" -q "$HOSTNQN" >"$WORK/discover.txt" 2>&1; then
    fail "$key" "nvme discover -t tcp -a $addr -s $port failed" "$WORK/discover.txt"; return 1
  fi
  cat "$WORK/discover.txt"
  if ! grep -q "^subnqn: *$nqn\$" "$WORK/discover.txt"; then
    fail "$key" "the discovery log does not list subsystem $nqn" "$WORK/discover.txt"; return 1
  fi
  grep -q "^traddr: *$addr\$" "$WORK/discover.txt" || { fail "$key" "the entry for $nqn lacks traddr $addr" "$WORK/discover.txt"; return 1; }
  res "$key.entries" "$(grep -c '^=====Discovery Log Entry' "$WORK/discover.txt")"
  res "$key.subnqn" "$nqn"
  res "$key" ok
}

# connect <key> <addr> <port> <nqn> [extra nvme-connect args]: sets CTRL (nvmeX) and DEV (/dev/nvmeXnY).
connect() {
  local key=$1 addr=$2 port=$3 nqn=$4 i b; shift 4
  CTRL="" DEV=""
  if ! timeout 90 nvme connect -t tcp -a "$addr" -s "$port" -n "$nqn" -q "$HOSTNQN" ${HOSTID:+-I "$HOSTID"} "$@" \
      >"$WORK/connect.txt" 2>&1; then
    fail "$key" "nvme connect -t tcp -a $addr -s $port -n $nqn $* failed" "$WORK/connect.txt"; return 1
  fi
  cat "$WORK/connect.txt"
  for i in $(seq 1 300); do
    for b in /sys/block/nvme*n*; do
      [ -e "$b/device/subsysnqn" ] || continue
      [ "$(cat "$b/device/subsysnqn")" = "$nqn" ] || continue
      DEV=/dev/$(basename "$b")
    done
    for c in /sys/class/nvme/nvme*; do
      [ -e "$c/subsysnqn" ] && [ "$(cat "$c/subsysnqn")" = "$nqn" ] && CTRL=$(basename "$c")
    done
    [ -n "$DEV" ] && [ -n "$CTRL" ] && [ -b "$DEV" ] && break
    DEV="" ; sleep 0.1
  done
  if [ -z "$DEV" ]; then fail "$key" "no block device for $nqn appeared within 30 s of connecting (ctrl '${CTRL}')"; return 1; fi
  res "$key.ctrl" "$CTRL"
  res "$key.dev" "$DEV"
  res "$key.transport" "$(cat /sys/class/nvme/$CTRL/transport) $(cat /sys/class/nvme/$CTRL/address)"
  res "$key.queue_count" "$(cat /sys/class/nvme/$CTRL/queue_count 2>/dev/null)"
  res "$key.sqsize" "$(cat /sys/class/nvme/$CTRL/sqsize 2>/dev/null)"
  res "$key" ok
}

# id_ctrl <key> <ctrl> <nqn>: prints id-ctrl; model/serial must be printable and non-empty, subnqn must be <nqn>.
id_ctrl() {
  local key=$1 ctrl=$2 nqn=$3
  if ! nvme id-ctrl "/dev/$ctrl" >"$WORK/id-ctrl.txt" 2>&1 || ! nvme id-ctrl "/dev/$ctrl" -o json >"$WORK/id-ctrl.json" 2>&1; then
    fail "$key" "nvme id-ctrl /dev/$ctrl failed" "$WORK/id-ctrl.txt"; return 1
  fi
  cat "$WORK/id-ctrl.txt"
  # one "name=value" per line; strip the space padding of the ASCII fields
  jq -r 'to_entries[] | select(.key as $k | ["mn","sn","fr","subnqn","ver","cntlid","mdts","sqes","cqes","nn",
      "ioccsz","iorcsz","maxcmd","kas"] | index($k)) | "\(.key)=\(.value|tostring|sub("^ +";"")|sub(" +$";""))"' \
    "$WORK/id-ctrl.json" >"$WORK/id-ctrl.kv" || { fail "$key" "cannot parse id-ctrl JSON" "$WORK/id-ctrl.json"; return 1; }
  while IFS= read -r kv; do res "$key.${kv%%=*}" "${kv#*=}"; done <"$WORK/id-ctrl.kv"
  local mn sn sub
  mn=$(sed -n 's/^mn=//p' "$WORK/id-ctrl.kv"); sn=$(sed -n 's/^sn=//p' "$WORK/id-ctrl.kv"); sub=$(sed -n 's/^subnqn=//p' "$WORK/id-ctrl.kv")
  [ -n "$mn" ] || { fail "$key" "empty model number"; return 1; }
  [ -n "$sn" ] || { fail "$key" "empty serial number"; return 1; }
  printf '%s%s' "$mn" "$sn" | LC_ALL=C grep -q '[^ -~]' && { fail "$key" "model/serial hold non-printable bytes: '$mn' '$sn'"; return 1; }
  [ "$sub" = "$nqn" ] || { fail "$key" "subnqn is '$sub', expected '$nqn'"; return 1; }
  res "$key" ok
}

# id_ns <key> <dev> <expected bytes> <expected lba size>: nsze * lba size must equal the namespace size.
id_ns() {
  local key=$1 dev=$2 bytes=$3 lba=$4
  if ! nvme id-ns "$dev" >"$WORK/id-ns.txt" 2>&1 || ! nvme id-ns "$dev" -o json >"$WORK/id-ns.json" 2>&1; then
    fail "$key" "nvme id-ns $dev failed" "$WORK/id-ns.txt"; return 1
  fi
  cat "$WORK/id-ns.txt"
  jq -r 'def p2(n): if n <= 0 then 1 else 2 * p2(n - 1) end; (.flbas % 16) as $f |
      "nsze=\(.nsze)", "ncap=\(.ncap)", "nuse=\(.nuse // 0)", "lba_size=\(p2(.lbafs[$f].ds))", "nlbaf=\(.nlbaf)"' \
    "$WORK/id-ns.json" >"$WORK/id-ns.kv" || { fail "$key" "cannot parse id-ns JSON" "$WORK/id-ns.json"; return 1; }
  while IFS= read -r kv; do res "$key.${kv%%=*}" "${kv#*=}"; done <"$WORK/id-ns.kv"
  local nsze got_lba
  nsze=$(sed -n 's/^nsze=//p' "$WORK/id-ns.kv"); got_lba=$(sed -n 's/^lba_size=//p' "$WORK/id-ns.kv")
  [ "$got_lba" = "$lba" ] || { fail "$key" "LBA size is $got_lba, expected $lba"; return 1; }
  [ $((nsze * got_lba)) -eq "$bytes" ] || { fail "$key" "nsze $nsze x $got_lba = $((nsze * got_lba)) bytes, expected $bytes"; return 1; }
  local sysfs
  sysfs=$(( $(cat /sys/block/$(basename "$dev")/size) * 512 ))
  [ "$sysfs" -eq "$bytes" ] || { fail "$key" "the block device has $sysfs bytes, expected $bytes"; return 1; }
  res "$key" ok
}

# fio_verify <key> <dev> <fio args...>: a write-then-verify job (crc32c); passes only when fio exits 0, reports
# no error, and actually read data back (a verify phase that read nothing proves nothing).
fio_verify() {
  local key=$1 dev=$2; shift 2
  local eng=${FIO_ENGINE:-io_uring}
  timeout 600 fio --name="${key##*.}" --filename="$dev" --direct=1 --ioengine="$eng" --iodepth=16 \
      --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 "$@" \
      --output-format=json --output="$WORK/fio.json" >"$WORK/fio.err" 2>&1
  local rc=$?
  # fio may print notes before the JSON document
  sed -n '/^{/,$p' "$WORK/fio.json" | jq -r '.jobs[0] | "error=\(.error)",
      (("read", "write") as $d | "\($d)_ios=\(.[$d].total_ios)", "\($d)_bytes=\(.[$d].io_bytes)", "\($d)_iops=\(.[$d].iops|floor)")' \
    >"$WORK/fio.kv" 2>>"$WORK/fio.err"
  while IFS= read -r kv; do res "$key.${kv%%=*}" "${kv#*=}"; done <"$WORK/fio.kv"
  local err rios
  err=$(sed -n 's/^error=//p' "$WORK/fio.kv"); rios=$(sed -n 's/^read_ios=//p' "$WORK/fio.kv")
  if [ $rc -ne 0 ] || [ "${err:-x}" != 0 ]; then fail "$key" "fio exited $rc, error '${err}' (args: $*)" "$WORK/fio.err"; return 1; fi
  [ "${rios:-0}" -gt 0 ] || { fail "$key" "fio read nothing back, so nothing was verified" "$WORK/fio.err"; return 1; }
  res "$key" ok
}

# disconnect <key> <nqn>: exactly one controller goes away.
disconnect() {
  local key=$1 nqn=$2
  if ! timeout 60 nvme disconnect -n "$nqn" >"$WORK/disconnect.txt" 2>&1; then
    fail "$key" "nvme disconnect -n $nqn failed" "$WORK/disconnect.txt"; return 1
  fi
  cat "$WORK/disconnect.txt"
  grep -q "disconnected 1 controller" "$WORK/disconnect.txt" || { fail "$key" "unexpected disconnect output" "$WORK/disconnect.txt"; return 1; }
  res "$key" ok
}

# verify_suite <prefix> <addr> <port> <nqn> <bytes> <lba> <full|short>: discover, connect, identify, fio verify
# (full: 32 MiB 4k randwrite, 32 MiB mixed sizes, 16 MiB randrw; short: 8 MiB 4k, 16 MiB mixed), disconnect.
verify_suite() {
  local p=$1 addr=$2 port=$3 nqn=$4 bytes=$5 lba=$6 depth=$7
  discover "$p.discover" "$addr" "$port" "$nqn"
  connect "$p.connect" "$addr" "$port" "$nqn" || return 1
  id_ctrl "$p.id_ctrl" "$CTRL" "$nqn"
  id_ns "$p.id_ns" "$DEV" "$bytes" "$lba"
  if [ "$depth" = full ]; then
    fio_verify "$p.fio.randwrite_4k" "$DEV" --rw=randwrite --bs=4k --size=32M
    fio_verify "$p.fio.randwrite_mixed" "$DEV" --rw=randwrite --bsrange="$lba"-128k --size=32M --offset=64M
    fio_verify "$p.fio.randrw" "$DEV" --rw=randrw --rwmixread=50 --bs=8k --size=16M --offset=128M --verify_backlog=64
  else
    fio_verify "$p.fio.randwrite_4k" "$DEV" --rw=randwrite --bs=4k --size=8M
    fio_verify "$p.fio.randwrite_mixed" "$DEV" --rw=randwrite --bsrange="$lba"-128k --size=16M --offset=64M
  fi
  disconnect "$p.disconnect" "$nqn"
}

# --- one ringside-tgt at a time on a local NVMe device (nvme-uring-cmd.sh, nvme-vfio.sh) ---------------------
# They use TGT, PERF (the binaries), ADDR, PORT, TRID (ringside-perf's -r), TPID (the running target), and
# RUNAS (an optional prefix, e.g. setpriv, for the target). (nvmf-rdma.sh defines its own perf_verify after sourcing.)

# start_tgt <key> [args]: ringside-tgt in the background ($TPID), listening within 60 s; its log is
# $WORK/<key>.log, its trace file $WORK/ringside.<key>.
start_tgt() {
  local key=$1 i; shift
  ${RUNAS:-} "$TGT" --listen $ADDR:$PORT --name "$key" --trace-dir "$WORK" --rpc-socket "$WORK/$key.sock" "$@" \
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
# proc_state <pid>: where a process is stuck (for the log)
proc_state() {
  echo "process $1: $(tr '\0' ' ' </proc/$1/cmdline 2>/dev/null | cut -c1-80)"
  for t in /proc/$1/task/*; do
    echo "  task $(basename $t) $(cat $t/comm 2>/dev/null) state=$(awk '/^State/{print $2}' $t/status 2>/dev/null) wchan=$(cat $t/wchan 2>/dev/null)"
    sed 's/^/    /' $t/stack 2>/dev/null | head -n 12
  done
  dmesg | tail -n 15 | sed 's/^/  dmesg: /'
}
# stop_tgt <key>: SIGTERM, exit status 0 within 60 s (where it is stuck printed after 10 s)
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
    fail "$key.stop" "still running 60 s after SIGTERM" "$WORK/$key.log"; kill -KILL $TPID; wait $TPID; TPID=""; return 1
  fi
  wait $TPID; rc=$?; TPID=""
  echo "ringside-tgt ($key) log:"; sed 's/^/  | /' "$WORK/$key.log"
  res "$key.stop.status" $rc
  [ $rc -eq 0 ] && res "$key.stop" ok || fail "$key.stop" "exit status $rc after SIGTERM" "$WORK/$key.log"
}
# perf_verify <key> <io size> [perf args]: ringside-perf --verify exits 0 having checked blocks, no mismatch, no
# error. The working set (prefilled first) is 2048 I/Os of the size, at most 16 MiB, so small sizes stay quick
# under TCG.
perf_verify() {
  local key=$1 sz=$2 rc range; shift 2
  range=$((sz * 2048)); [ $range -gt $((16 << 20)) ] && range=$((16 << 20))
  timeout 900 "$PERF" -r "$TRID" -q 8 -o "$sz" -w randrw --verify --range $range -t 3 --io-limit 2000 --cores 2 \
    --io-timeout 60 --json "$@" >"$WORK/$key.json" 2>"$WORK/$key.err"
  rc=$?
  jq -r '"checked_blocks=\(.verify.checked_blocks // 0)", "mismatches=\(.verify.mismatches // -1)",
      "errors=\(.total.errors)", "reads=\(.total.reads)", "writes=\(.total.writes)"' "$WORK/$key.json" \
    >"$WORK/$key.kv" 2>>"$WORK/$key.err"
  while IFS= read -r kv; do res "$key.${kv%%=*}" "${kv#*=}"; done <"$WORK/$key.kv"
  res "$key.status" $rc
  if [ $rc -eq 0 ] && grep -q '^mismatches=0$' "$WORK/$key.kv" && grep -q '^errors=0$' "$WORK/$key.kv" \
     && grep -q '^checked_blocks=[1-9]' "$WORK/$key.kv"; then res "$key" ok
  else fail "$key" "ringside-perf --verify -o $sz exited $rc" "$WORK/$key.kv" "$WORK/$key.err" "$WORK/$key.json"; fi
}
# describe_ns <key>: the first namespace as the trace description of target <key> gives it ($RS: the agent),
# as <key>.describe.{backend,device,device_path,numa_node,block_size,size_bytes,queues,abi}; queues lists
# reactor:qid pairs.
describe_ns() {
  local key=$1
  "$RS" trace --file "$WORK/ringside.$key" --describe --json >"$WORK/$key-describe.json" 2>"$WORK/$key-describe.err"
  jq -r '.description.subsystems[0].namespaces[0] | "backend=\(.backend)", "device=\(.device)",
      "device_path=\(.device_path)", "numa_node=\(.numa_node)", "block_size=\(.block_size)",
      "size_bytes=\(.size_bytes)", "queues=\([(.device_queues // [])[] | "\(.reactor):\(.qid)"] | join(","))"' \
    "$WORK/$key-describe.json" >"$WORK/$key-describe.kv" 2>>"$WORK/$key-describe.err"
  while IFS= read -r kv; do res "$key.describe.${kv%%=*}" "${kv#*=}"; done <"$WORK/$key-describe.kv"
  res "$key.describe.abi" "$(jq -r .abi "$WORK/$key-describe.json")"
  "$RS" trace --file "$WORK/ringside.$key" --describe 2>&1 | grep -E "reactor|nsid" | sed 's/^/  | /'
}
# zeroes_at <dev> <byte offset> <bytes>: the range reads back as zeroes (direct I/O)
zeroes_at() {
  dd if="$1" iflag=direct,skip_bytes,count_bytes skip="$2" count="$3" bs=4096 2>/dev/null | cmp -s -n "$3" - /dev/zero
}
# zeroes_checks <dev>: through the host block device <dev>, Write Zeroes (8 KiB in the middle of 64 KiB of random
# data at 96 MiB; the neighbours keep theirs) and Dataset Management deallocate (16 KiB of 64 KiB at 100 MiB) read
# back as zeroes (kernel.write_zeroes, kernel.deallocate). Leaves the pattern at 96 MiB in $WORK/pattern.
zeroes_checks() {
  local dev=$1 lba off
  lba=$(cat /sys/block/$(basename "$dev")/queue/logical_block_size)
  res kernel.lba "$lba"
  dd if=/dev/urandom of="$WORK/pattern" bs=65536 count=1 2>/dev/null
  off=$((96 << 20))
  dd if="$WORK/pattern" of="$dev" oflag=direct,seek_bytes seek=$off bs=65536 count=1 2>/dev/null
  if ! zeroes_at "$dev" $((off + 16384)) 8192; then res kernel.written ok; else fail kernel.written "the pattern did not land"; fi
  nvme write-zeroes "$dev" --start-block=$(( (off + 16384) / lba )) --block-count=$(( 8192 / lba - 1 )) \
    >"$WORK/wz.txt" 2>&1
  res kernel.write_zeroes.status $?
  if zeroes_at "$dev" $((off + 16384)) 8192 && \
     dd if="$dev" iflag=direct,skip_bytes skip=$off bs=16384 count=1 2>/dev/null | cmp -s -n 16384 - "$WORK/pattern"; then
    res kernel.write_zeroes ok
  else
    fail kernel.write_zeroes "the zeroed range does not read back as zeroes (or its neighbours changed)" "$WORK/wz.txt"
  fi
  off=$((100 << 20))
  dd if="$WORK/pattern" of="$dev" oflag=direct,seek_bytes seek=$off bs=65536 count=1 2>/dev/null
  nvme dsm "$dev" --ad --slbs=$(( (off + 32768) / lba )) --blocks=$(( 16384 / lba )) >"$WORK/dsm.txt" 2>&1
  res kernel.deallocate.status $?
  if zeroes_at "$dev" $((off + 32768)) 16384; then res kernel.deallocate ok
  else fail kernel.deallocate "the deallocated range does not read back as zeroes" "$WORK/dsm.txt"; fi
}
# read_error_status <dev> <byte>: QEMU fails reads of <byte> (run.sh --nvme-blkdebug); `nvme read` of that block
# through the host device <dev> must get the controller's Unrecovered Read Error (SCT 2h SC 81h, whatever
# CRD/More/DNR bits it set) unchanged (status.read_error), and a block 8 further on still reads
# (status.neighbour). Passthrough commands are not retried by Linux (REQ_FAILFAST_DRIVER) on either side.
read_error_status() {
  local dev=$1 at=$2 lba st
  lba=$(cat /sys/block/$(basename "$dev")/queue/logical_block_size)
  nvme read "$dev" --start-block=$((at / lba)) --block-count=0 --data-size=$lba --data=/dev/null \
    >"$WORK/status-read.txt" 2>&1
  res status.read.exit $?
  st=$(grep -o '(0x[0-9a-fA-F]*)' "$WORK/status-read.txt" | tail -n 1 | tr -d '()')
  res status.read "$st"
  if [ -n "$st" ] && [ $(( st & 0x7ff )) -eq $(( 0x281 )) ]; then res status.read_error ok
  else fail status.read_error "nvme read of the failing block gave '$st', not the controller's Unrecovered Read Error" "$WORK/status-read.txt"; fi
  nvme read "$dev" --start-block=$((at / lba + 8)) --block-count=0 --data-size=$lba --data=/dev/null \
    >"$WORK/status-ok.txt" 2>&1 && res status.neighbour ok || fail status.neighbour "a block next to the failing one does not read" "$WORK/status-ok.txt"
}
# kill_under_load <range>: 4 KiB random writes over <range> bytes, SIGKILL the target 3 s in (restart.killed)
kill_under_load() {
  local lpid
  "$PERF" -r "$TRID" -q 16 -o 4096 -w randwrite --range "$1" -t 30 --cores 2 >"$WORK/kill-load.log" 2>&1 &
  lpid=$!
  sleep 3
  kill -KILL $TPID; wait $TPID 2>/dev/null; TPID=""
  wait $lpid 2>/dev/null
  res restart.killed ok
}

# dmesg_check: the kernel must have logged no NVMe trouble (a controller reset or an I/O timeout that the host
# recovered from would otherwise pass unnoticed, since fio only sees the retried I/O succeed).
# A step that provokes kernel NVMe errors on purpose sets DMESG_MARK and writes it to /dev/kmsg first: only the
# lines before the mark count.
dmesg_check() {
  if [ -n "${DMESG_MARK:-}" ]; then dmesg | sed "/$DMESG_MARK/,\$d"; else dmesg; fi | grep -E 'nvme|nvmet' >"$WORK/dmesg-nvme.txt"
  grep -iE 'timeout|timed out|expired|reset|reconnect|error|fail|invalid|unexpected|digest|abort' \
    "$WORK/dmesg-nvme.txt" >"$WORK/dmesg-problems.txt"
  res dmesg.nvme_problems "$(wc -l <"$WORK/dmesg-problems.txt")"
  echo "kernel NVMe log:"; sed 's/^/  : /' "$WORK/dmesg-nvme.txt" | tail -n 60
  if [ -s "$WORK/dmesg-problems.txt" ]; then
    fail dmesg "the kernel logged NVMe problems" "$WORK/dmesg-problems.txt"
  else
    res dmesg ok
  fi
}

lab_finish() {
  dmesg_check
  if [ $FAILED = 0 ]; then res all ok; return 0; fi
  echo "LAB_ERROR summary: at least one step failed (see LAB_ERROR lines above)"
  res all fail
  return 1
}
