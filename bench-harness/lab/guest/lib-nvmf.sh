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
