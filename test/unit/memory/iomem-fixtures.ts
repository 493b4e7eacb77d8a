/**
 * /proc/iomem as root sees it in the lab's QEMU guests (-m 1024), with the
 * kernel series' "Quick kexec" reservation. Shapes follow real output:
 * 8-digit zero-padded addresses, two spaces per level, inclusive ends.
 */

/** x86_64 `-M pc`, quickkexec=96M placed top-down below 4 GiB at 16 MiB alignment, like crashkernel=. */
export const X86_64_QEMU_IOMEM = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000c0000-000c99ff : Video ROM
000ca000-000cadff : Adapter ROM
000cb000-000cb5ff : Adapter ROM
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-3ffdffff : System RAM
  01000000-01e02b70 : Kernel code
  02000000-0247efff : Kernel rodata
  02600000-02846dbf : Kernel data
  02d8c000-02ffffff : Kernel bss
  39000000-3effffff : Quick kexec
3ffe0000-3fffffff : Reserved
40000000-afffffff : PCI Bus 0000:00
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
  b0000000-bfffffff : Reserved
c0000000-febfffff : PCI Bus 0000:00
  fd000000-fdffffff : 0000:00:02.0
  feb00000-feb7ffff : 0000:00:03.0
  feb80000-feb9ffff : 0000:00:03.0
  febb0000-febb0fff : 0000:00:02.0
fec00000-fec003ff : IOAPIC 0
fed00000-fed003ff : HPET 0
  fed00000-fed003ff : PNP0103:00
fee00000-fee00fff : Local APIC
fffc0000-ffffffff : Reserved
100000000-17fffffff : PCI Bus 0000:00
`;

/** arm64 `-M virt -cpu cortex-a57`, RAM at 1 GiB, DT boot, quickkexec=96M. */
export const ARM64_VIRT_IOMEM = `00000000-03ffffff : 0.flash flash@0
04000000-07ffffff : 0.flash flash@0
09000000-09000fff : pl011@9000000
  09000000-09000fff : 9000000.pl011 pl011@9000000
09010000-09010fff : pl031@9010000
  09010000-09010fff : rtc-pl031
09030000-09030fff : pl061@9030000
  09030000-09030fff : 9030000.pl061 pl061@9030000
0a000000-0a0001ff : a000000.virtio_mmio virtio_mmio@a000000
0a003e00-0a003fff : a003e00.virtio_mmio virtio_mmio@a003e00
10000000-3efeffff : pcie@10000000
3f000000-3fffffff : PCI ECAM
40000000-7fffffff : System RAM
  40210000-4181ffff : Kernel code
  41820000-41c4ffff : reserved
  41c50000-4207ffff : Kernel data
  48000000-480fffff : reserved
  70000000-75ffffff : Quick kexec
  7b1d0000-7b2fffff : reserved
  7fdd0000-7fffffff : reserved
8000000000-ffffffffff : pcie@10000000
`;

/** Replace the Quick kexec line (or drop it with an empty replacement). */
export function withQuick(iomem: string, line: string | null): string {
  return iomem
    .split('\n')
    .flatMap((l) => (l.endsWith(' : Quick kexec') ? (line === null ? [] : [line]) : [l]))
    .join('\n');
}
