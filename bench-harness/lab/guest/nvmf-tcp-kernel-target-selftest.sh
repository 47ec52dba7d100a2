#!/bin/sh
# Reference check of the lab itself (runs inside the guest): the Linux kernel NVMe/TCP target (nvmet-tcp)
# exporting a 256 MiB brd ramdisk (512-byte blocks) and a 256 MiB tmpfs file (4096-byte blocks), driven by the
# kernel initiator (nvme-tcp) through exactly the steps nvmf-tcp-kernel-initiator.sh runs against ringside-tgt.
# If this passes and the ringside run fails, the fault is in ringside-tgt, not in the lab.
# Usage (host): bench-harness/lab/run.sh -- bench-harness/lab/guest/nvmf-tcp-kernel-target-selftest.sh
. "$(dirname "$0")/lib-nvmf.sh"
ADDR=127.0.0.1 PORT=4420 SZ=$((256 << 20))
NQN512=nqn.2026-11.io.ringside:lab-selftest-512 NQN4K=nqn.2026-11.io.ringside:lab-selftest-4k

setup_nvmet() {
  modprobe brd rd_nr=1 rd_size=$((SZ >> 10)) max_part=0 || return 1
  truncate -s $SZ /dev/shm/ns4k.img || return 1
  modprobe nvmet && modprobe nvmet-tcp && modprobe nvme-tcp || return 1
  C=/sys/kernel/config/nvmet
  for s in "$NQN512 /dev/ram0" "$NQN4K /dev/shm/ns4k.img"; do
    set -- $s
    mkdir $C/subsystems/$1 && echo 1 > $C/subsystems/$1/attr_allow_any_host || return 1
    mkdir $C/subsystems/$1/namespaces/1 && echo $2 > $C/subsystems/$1/namespaces/1/device_path || return 1
    echo 1 > $C/subsystems/$1/namespaces/1/enable || return 1
  done
  mkdir $C/ports/1 && echo tcp > $C/ports/1/addr_trtype && echo ipv4 > $C/ports/1/addr_adrfam || return 1
  echo $ADDR > $C/ports/1/addr_traddr && echo $PORT > $C/ports/1/addr_trsvcid || return 1
  ln -s $C/subsystems/$NQN512 $C/ports/1/subsystems/ && ln -s $C/subsystems/$NQN4K $C/ports/1/subsystems/
}
if setup_nvmet > $WORK/setup.txt 2>&1; then res target ok; else fail target "configuring nvmet failed" $WORK/setup.txt; lab_finish; exit; fi

verify_suite lba512 $ADDR $PORT $NQN512 $SZ 512 full
verify_suite lba4096 $ADDR $PORT $NQN4K $SZ 4096 short
# header and data digests (CRC32C on every PDU header and data payload)
if connect digest.connect $ADDR $PORT $NQN512 -g -G; then
  fio_verify digest.fio.randwrite_4k "$DEV" --rw=randwrite --bs=4k --size=8M --offset=192M
  fio_verify digest.fio.randwrite_mixed "$DEV" --rw=randwrite --bsrange=512-128k --size=8M --offset=200M
  disconnect digest.disconnect $NQN512
fi
lab_finish
