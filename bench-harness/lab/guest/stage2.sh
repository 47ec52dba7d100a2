#!/bin/sh
# Lab guest stage 2: PID 1 inside the tmpfs overlay of the host's root (exec'd by the initramfs `init`).
# Mounts the pseudo filesystems, runs the command file that run.sh left in the results share
# ($OUT/lab-cmd.sh), prints LAB_RC=<status> and hands the status to QEMU through isa-debug-exit
# (QEMU then exits with (status<<1)|1, which run.sh decodes). Without a command file: a shell on ttyS0.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8
arg() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" /proc/cmdline; }
OUT=$(arg lab.out)
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm /dev/hugepages
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
modprobe configfs 2>/dev/null; mount -t configfs configfs /sys/kernel/config 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t hugetlbfs hugetlbfs /dev/hugepages 2>/dev/null
ip link set lo up
hostname lab
echo "LAB_STAGE2_UP uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r) cpus=$(nproc)"
rc=0
if [ -n "$OUT" ] && [ -f "$OUT/lab-cmd.sh" ]; then
  sh "$OUT/lab-cmd.sh" </dev/null; rc=$?
else
  setsid -c sh -i </dev/ttyS0 >/dev/ttyS0 2>&1
fi
echo "LAB_RC=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
# Statuses above 127 (killed by a signal) cannot be told apart from the runner's own codes: report 127.
[ $rc -gt 127 ] && rc=127
printf "\\$(printf %o $rc)" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
busybox poweroff -f
