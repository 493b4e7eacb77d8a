#!/bin/sh
# Installs what qkexec's tests and lab need on a fresh Debian machine, and
# nothing when it is already there: Debian packages (QEMU for both arches,
# busybox, kexec-tools as the reference loader, GNU as for both arches to
# check the purgatory encoders, the 6.12 source and toolchain for the
# patched kernels), arm64 as a foreign dpkg architecture (the arm64 guest's
# kernel, busybox and kexec-tools are Debian arm64 packages), and the npm
# packages, then the guests' assets and the two kernels patched with the
# quick kexec series (kernel/build: 10-30 min per arch on two shared cores,
# a cache hit that only prints a path afterwards); the series' 7.2 port
# too, for each arch, only when QKEXEC_QUICK_BASES names 7.2 (see
# test/e2e/quick.test.ts). Idempotent; safe to run on every `npm test`.
set -eu
cd "$(dirname "$0")/.."

need=""
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need="$need qemu-system-x86"
have qemu-system-aarch64 || need="$need qemu-system-arm"
[ -x /bin/busybox ] || need="$need busybox-static"
have kexec || need="$need kexec-tools"
have aarch64-linux-gnu-as || need="$need binutils-aarch64-linux-gnu"
have aarch64-linux-gnu-gcc || need="$need gcc-aarch64-linux-gnu"
have cpio || need="$need cpio"
{ have make && have gcc && [ -f /usr/include/stdio.h ]; } || need="$need build-essential"
have patch || need="$need patch"
have flock || need="$need util-linux"
have xz || need="$need xz-utils"
have bc || need="$need bc"
have bison || need="$need bison"
have flex || need="$need flex"
[ -f /usr/include/libelf.h ] || need="$need libelf-dev"
[ -f /usr/include/openssl/ssl.h ] || need="$need libssl-dev"
ls /usr/src/linux-source-6.12.tar.* >/dev/null 2>&1 || need="$need linux-source-6.12"
have openssl || need="$need openssl"
# UEFI guests (OVMF, AAVMF), signed kernels, UKIs, kdump, disk images,
# Debian packages, and the compressors distributions' payloads use
[ -f /usr/share/ovmf/OVMF.fd ] || need="$need ovmf"
[ -f /usr/share/qemu-efi-aarch64/QEMU_EFI.fd ] || need="$need qemu-efi-aarch64"
have sbsign || need="$need sbsigntool"
[ -f /usr/lib/systemd/boot/efi/linuxx64.efi.stub ] || need="$need systemd-boot-efi"
have objcopy || need="$need binutils"
have makedumpfile || need="$need makedumpfile"
have mmdebstrap || need="$need mmdebstrap"
have mkfs.ext4 || need="$need e2fsprogs"
have dpkg-deb || need="$need dpkg"
have dpkg-source || need="$need dpkg-dev"
have lintian || need="$need lintian"
# The systemd guest's EFI system partition (a GPT disk image with a vfat
# partition, filled without mounting it)
have sfdisk || need="$need fdisk"
have mkfs.vfat || need="$need dosfstools"
have mcopy || need="$need mtools"
have zstd || need="$need zstd"
have lz4 || need="$need lz4"
have lzop || need="$need lzop"
have bzip2 || need="$need bzip2"
# The native exec program's tests: run the arm64 one on this host, watch its
# syscalls; hyperfine times process start-ups for bench/.
have qemu-aarch64 || need="$need qemu-user"
have strace || need="$need strace"
have hyperfine || need="$need hyperfine"

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  updated=no
else
  updated=yes
fi
if [ -n "$need" ] || [ "$updated" = no ]; then
  echo "ensure-deps: apt-get install$need" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  [ -z "$need" ] || apt-get install -y -q $need >&2
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "ensure-deps: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi

# Guest assets (Debian kernels, busybox, kexec-tools and node for both
# arches), cached; idempotent and quick when present.
npx tsx src/lab/assets/assets.ts fetch all >&2

# The quick kexec kernels the quick e2e tests and the benchmark boot.
# kernel/build caches by the series' hash and locks per arch, so a test
# that asks for the same kernel later (or at the same time) waits for this
# build instead of starting its own. Its last stdout line (the image path)
# is not this script's output.
for arch in x86_64 arm64; do
  kernel/build --base 6.12 --flavour lab "$arch" >&2
done
# kexec-tools with the companion patch (kernel/kexec-tools), which arm64
# guests use to aim kexec_load at the Quick kexec region: seconds to
# build, cached by its inputs like the kernels.
kernel/kexec-tools/build --sysroot "${QKEXEC_CACHE:-$HOME/.cache/qkexec}/debian/arm64/root" arm64 >/dev/null
# The series' 7.2 port (base flavour, Debian unstable's source, fetched by
# kernel/build), which test/e2e/quick.test.ts proves only when asked:
# two more kernel builds that CI's budget on a fresh machine has no room
# for. Same variable as the test, e.g. QKEXEC_QUICK_BASES=6.12,7.2.
case ",$(printf %s "${QKEXEC_QUICK_BASES:-}" | tr -d ' ')," in
*,7.2,*)
  for arch in x86_64 arm64; do
    kernel/build --base 7.2 --flavour base "$arch" >&2
  done
  ;;
esac
