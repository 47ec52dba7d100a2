#!/usr/bin/env bash
# Prepares the QEMU lab (see README.md next to this file): host packages, a stock Debian kernel extracted
# (not installed), an uncompressed vmlinux for PVH boot and a tiny initramfs. Idempotent; when everything is in
# place it returns in well under a second (a stamp file records what was built and from which scripts).
#
# Usage: bench-harness/lab/setup.sh [--force]
# Env:   RINGSIDE_LAB         lab state dir (default /var/tmp/ringside-lab; survives reboots, recreated when missing)
#        RINGSIDE_LAB_KERNEL  bpo (default: bookworm-backports 6.12) | stable (bookworm 6.1)
# Needs root only to install missing packages (CI runs it as root on a fresh Debian 12 machine).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # depmod, modprobe, nvme live there; a user PATH may lack them

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB=${RINGSIDE_LAB:-/var/tmp/ringside-lab}
KFLAVOUR=${RINGSIDE_LAB_KERNEL:-bpo}
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

die() { echo "lab setup: error: $*" >&2; trap - EXIT; exit 1; }
say() { echo "lab setup: $*"; }
STEP="start"
trap 'rc=$?; [ $rc -ne 0 ] && echo "lab setup: error: step \"$STEP\" failed (exit $rc); lab dir $LAB" >&2' EXIT

case "$LAB" in *[[:space:]]*) die "RINGSIDE_LAB must not contain whitespace (it is passed on the guest kernel command line): '$LAB'";; esac
case "$KFLAVOUR" in bpo|stable) ;; *) die "RINGSIDE_LAB_KERNEL must be 'bpo' or 'stable', not '$KFLAVOUR'";; esac
[ "$(uname -m)" = x86_64 ] || die "the lab needs an x86_64 host (this is $(uname -m))"
mkdir -p "$LAB" || die "cannot create lab dir $LAB"

# Serialise concurrent setups (two test binaries may call us at once).
exec 9>"$LAB/.setup.lock"
flock 9 || die "cannot lock $LAB/.setup.lock"

# Host tools the guest runs (it sees the host's root) and the tools this script uses.
PKGS=(qemu-system-x86 busybox-static cpio kmod nvme-cli fio rdma-core ibverbs-utils ibverbs-providers
      libibverbs-dev librdmacm-dev numactl pciutils bpftool iproute2 python3 xz-utils zstd jq)
# One command per package that proves it is installed and usable (dpkg status alone misses a broken PATH).
need_cmds() { echo qemu-system-x86_64 busybox cpio depmod modprobe nvme fio rdma ibv_devices numactl lspci bpftool ip python3 xz zstd jq; }

# The stamp covers the scripts whose output is cached here, so editing them rebuilds the lab.
STAMP_ID=$(cat "$HERE/setup.sh" "$HERE/guest/init" | sha256sum | cut -c1-16)
STAMP="$LAB/stamp"
want_stamp="scripts=$STAMP_ID kernel=$KFLAVOUR"

all_cmds_present() { local c; for c in $(need_cmds); do command -v "$c" >/dev/null 2>&1 || return 1; done; [ -x /bin/busybox ]; }
lab_built() { [ -s "$LAB/KVER" ] && [ -s "$LAB/vmlinux" ] && [ -s "$LAB/initrd.cpio" ] && [ -d "$LAB/kroot/lib/modules/$(cat "$LAB/KVER")" ]; }

if [ $FORCE = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] && all_cmds_present && lab_built; then
  say "already set up ($LAB, kernel $(cat "$LAB/KVER"))"
  trap - EXIT
  exit 0
fi
T0=$(date +%s)

# apt writes temporary files under TMPDIR; /tmp can vanish under it on this machine kind.
export TMPDIR="$LAB/tmp" DEBIAN_FRONTEND=noninteractive
mkdir -p "$TMPDIR" "$LAB/apt/lists/partial" "$LAB/apt/cache/archives/partial" "$LAB/out" "$LAB/runs"

# --- 1. a private apt source list derived from the machine's own mirrors (leaves /etc/apt unchanged) -------
STEP="apt sources"
# Both formats: one-line "deb [opts] URI suite..." and deb822 "URIs: URI". Disabled files do not match the globs.
uris=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | grep -hoE '^[[:space:]]*(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]*)?[a-z+]+://[^[:space:]]+' \
  | grep -oE '[a-z+]+://[^[:space:]]+' || true)
MIRROR=$(printf '%s\n' "$uris" | grep -E '/debian/?$|/debian/[0-9TZ]+/?$' | grep -v security | head -n1 || true)
SECURITY=$(printf '%s\n' "$uris" | grep -E 'debian-security' | head -n1 || true)
if [ -z "$MIRROR" ]; then MIRROR=http://deb.debian.org/debian; say "no Debian mirror found in /etc/apt; using $MIRROR"; fi
if [ -z "$SECURITY" ]; then SECURITY=http://deb.debian.org/debian-security; fi
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || die "$KEYRING is missing (install debian-archive-keyring)"
cat > "$LAB/apt/sources.list" <<EOS
deb [signed-by=$KEYRING] $MIRROR bookworm main
deb [signed-by=$KEYRING] $MIRROR bookworm-updates main
deb [signed-by=$KEYRING] $SECURITY bookworm-security main
deb [signed-by=$KEYRING] $MIRROR bookworm-backports main
EOS
APT=(-o "Dir::Etc::SourceList=$LAB/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
     -o "Dir::State::Lists=$LAB/apt/lists" -o "Dir::Cache=$LAB/apt/cache" -o APT::Get::List-Cleanup=false)
apt_updated=0
apt_update() {
  [ $apt_updated = 1 ] && return 0
  STEP="apt-get update (private list $LAB/apt/sources.list)"
  apt-get "${APT[@]}" update -qq >"$LAB/apt/update.log" 2>&1 \
    || die "apt-get update failed (mirror $MIRROR); see $LAB/apt/update.log: $(grep -E '^(E|W):' "$LAB/apt/update.log" | head -n1)"
  apt_updated=1
}

# --- 2. host packages ----------------------------------------------------------------------------------------
STEP="packages"
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}: run this script as root (or install them)"
  apt_update
  STEP="apt-get install ${missing[*]}"
  say "installing ${missing[*]} (qemu from bookworm-backports: Debian 12's own conflicts with the backported qemu-utils)"
  # -t bookworm-backports: qemu-system-x86 (and its seabios/qemu-system-common) must match the base image's
  # backported qemu-utils; the rest resolve to whatever is newest in bookworm(+backports).
  apt-get "${APT[@]}" install -y -qq --no-install-recommends -t bookworm-backports "${missing[@]}" \
    >"$LAB/apt/install.log" 2>&1 \
    || die "apt-get install failed; see $LAB/apt/install.log: $(grep -E '^(E|W):' "$LAB/apt/install.log" | head -n1)"
  rm -f "$LAB"/apt/cache/archives/*.deb   # installed: the .debs only take space
fi
for c in $(need_cmds); do command -v "$c" >/dev/null 2>&1 || die "command '$c' still missing after installing packages"; done
[ -x /bin/busybox ] || die "/bin/busybox missing (package busybox-static)"
busybox --list | grep -qx switch_root || die "/bin/busybox lacks switch_root: is it busybox-static?"

# --- 3. the stock Debian kernel, extracted rather than installed ----------------------------------------------
# Default: bookworm-backports 6.12 (LTS). Over bookworm's 6.1 it adds nvme-loop, the nvmet passthru target and
# NVMe/TCP TLS, ships xz-compressed modules (178 MB extracted instead of 405 MB), and its NVMe/TCP host is the
# one current distributions run, so interop with it matters more. RINGSIDE_LAB_KERNEL=stable picks 6.1.
STEP="kernel package"
# stable: no -t, so the newest of bookworm, bookworm-updates and bookworm-security wins (security has the newest)
if [ $KFLAVOUR = bpo ]; then REL=(-t bookworm-backports); else REL=(); fi
KVER_OLD=$(cat "$LAB/KVER" 2>/dev/null || true)
kernel_ok() {
  [ -n "$KVER_OLD" ] && [ -d "$LAB/kroot/lib/modules/$KVER_OLD" ] && [ -f "$LAB/kroot/boot/vmlinuz-$KVER_OLD" ] \
    && [ "$(cat "$LAB/KFLAVOUR" 2>/dev/null)" = "$KFLAVOUR" ]
}
if [ $FORCE = 1 ] || ! kernel_ok; then
  apt_update
  KPKG=$(apt-cache "${APT[@]}" "${REL[@]}" depends linux-image-amd64 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$KPKG" ] || die "cannot resolve linux-image-amd64 (${REL[*]:-bookworm}) from $MIRROR"
  KVER=${KPKG#linux-image-}
  say "downloading $KPKG (${REL[*]:-bookworm})"
  rm -rf "$LAB/kroot" "$LAB/dl"; mkdir -p "$LAB/dl"
  (cd "$LAB/dl" && apt-get "${APT[@]}" "${REL[@]}" download -qq "$KPKG" >"$LAB/apt/download.log" 2>&1) \
    || die "downloading $KPKG failed; see $LAB/apt/download.log"
  STEP="dpkg -x $KPKG"
  dpkg -x "$LAB"/dl/"${KPKG}"_*.deb "$LAB/kroot"
  rm -rf "$LAB/dl"
  [ -f "$LAB/kroot/boot/vmlinuz-$KVER" ] || die "the package $KPKG holds no boot/vmlinuz-$KVER"
  STEP="depmod $KVER"
  depmod -b "$LAB/kroot" "$KVER"   # the .deb ships no modules.dep
  echo "$KVER" > "$LAB/KVER"
  echo "$KFLAVOUR" > "$LAB/KFLAVOUR"
  rm -f "$LAB/vmlinux"
else
  KVER=$KVER_OLD
fi

# --- 4. uncompressed vmlinux: QEMU boots its PVH entry directly (skips SeaBIOS real mode and the in-guest
#        decompression, about 4 s per boot under TCG) ---------------------------------------------------------
STEP="extract vmlinux"
if [ ! -s "$LAB/vmlinux" ]; then
  python3 - "$LAB/kroot/boot/vmlinuz-$KVER" "$LAB/vmlinux.tmp" <<'EOP'
import lzma, subprocess, sys
d = open(sys.argv[1], 'rb').read()
out = b''
i = d.find(b'\xfd7zXZ\x00')                      # Debian 6.1: xz
if i >= 0:
    out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[i:])
else:
    i = d.find(b'\x28\xb5\x2f\xfd')              # Debian 6.12: zstd
    if i >= 0:
        out = subprocess.run(['zstd', '-qdc'], input=d[i:], capture_output=True).stdout
if out[:4] != b'\x7fELF':
    sys.exit('lab setup: error: no xz/zstd-compressed ELF vmlinux found in ' + sys.argv[1])
open(sys.argv[2], 'wb').write(out)
EOP
  mv "$LAB/vmlinux.tmp" "$LAB/vmlinux"
fi

# --- 5. initramfs: static busybox + the modules needed to mount the host root over virtio-9p ------------------
STEP="initramfs"
W="$LAB/initrd.work"
rm -rf "$W"; mkdir -p "$W"/{bin,proc,sys,dev,mods,lower,rw,newroot}
cp /bin/busybox "$W/bin/busybox"
for m in virtio_pci 9pnet_virtio 9p overlay; do
  modprobe -d "$LAB/kroot" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}' \
    || die "module $m not found in $KVER"
done | awk '!seen[$0]++' > "$W/list"
[ -s "$W/list" ] || die "no modules resolved for the initramfs"
: > "$W/mods/order"
while read -r f; do
  b=$(basename "$f"); b=${b%.xz}; b=${b%.zst}
  case $f in *.xz) xz -dc "$f" > "$W/mods/$b";; *.zst) zstd -qdc "$f" > "$W/mods/$b";; *) cp "$f" "$W/mods/$b";; esac
  echo "$b" >> "$W/mods/order"
done < "$W/list"
rm "$W/list"
install -m 0755 "$HERE/guest/init" "$W/init"
(cd "$W" && find . | cpio -o -H newc --quiet) > "$LAB/initrd.cpio.tmp"
mv "$LAB/initrd.cpio.tmp" "$LAB/initrd.cpio"
rm -rf "$W"

echo "$want_stamp" > "$STAMP"
trap - EXIT
say "ready in $(( $(date +%s) - T0 )) s: $LAB (kernel $KVER, qemu $(qemu-system-x86_64 --version | head -n1 | awk '{print $4}'))"
