import type { Arch } from '../image/types.ts';
import type { Range } from '../memory/range.ts';

/** What each segment is for; the CLI and `qkexec plan` print these names. */
export type SegmentRole = 'kernel' | 'initrd' | 'dtb' | 'boot_params' | 'purgatory' | 'elfcorehdr';

/** A buffer to place: size and constraints, before placement. */
export interface SegmentRequest {
  role: SegmentRole;
  /** Bytes of data. */
  bufsz: bigint;
  /** Bytes of memory the segment occupies at its destination (>= bufsz). */
  memsz: bigint;
  /** Destination alignment. */
  align: bigint;
  /** Lowest and highest (exclusive) acceptable destination addresses. */
  min: bigint;
  max: bigint;
  /** Offset added after aligning (arm64 text_offset), default 0. */
  offset?: bigint;
  /** Prefer the highest fitting address (initrd, as kexec-tools does). */
  topDown?: boolean;
  /**
   * Bytes kept free from the aligned base, when more than offset + memsz:
   * the arm64 DTB owns its whole 2 MiB block. `min`/`max` bound this
   * footprint [base, base + footprint). Default offset + memsz.
   */
  footprint?: bigint;
  /**
   * Placed at or above the kernel's (lowest) segment and below
   * alignDown(that base, align) + size: arm64's booting.rst wants the
   * initrd in a 1 GiB aligned window of at most 32 GiB that covers the
   * kernel. The kernel is placed first; min/max still apply.
   */
  kernelWindow?: { align: bigint; size: bigint };
}

/** A placed segment; `mem`/`memsz` are what kexec_load's kexec_segment gets. */
export interface PlannedSegment extends SegmentRequest {
  mem: bigint;
}

/**
 * quick: in place in the Quick kexec region; standard: anywhere in free
 * RAM, relocated at reboot; crash: in place in the crash kernel region
 * (crashkernel=), booted on panic.
 */
export type Strategy = 'quick' | 'standard' | 'crash';

export interface KexecPlan {
  arch: Arch;
  strategy: Strategy;
  /** Why this strategy: "payload fits the Quick kexec region", "no Quick kexec region", "too small by N bytes". */
  reason: string;
  segments: PlannedSegment[];
  /** Physical address the kernel jumps to after relocation (purgatory). */
  entry: bigint;
  /** Bytes the kernel copies at reboot: 0 on the quick path. */
  bytesToRelocate: bigint;
  /** The region the strategy loads into: the Quick kexec region (when the memory map has one), or the crash kernel region. */
  region?: Range;
}
