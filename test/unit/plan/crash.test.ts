/**
 * The crash strategy: every segment of a crash image inside crashk_res, as
 * sanity_check_segment_list() demands, the ELF core header at the top,
 * nothing relocated; and what the planner says when the region is missing
 * or too small.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PlanError } from '../../../src/errors.ts';
import { parseIomem } from '../../../src/memory/iomem.ts';
import { memoryMapFromIomem } from '../../../src/memory/map.ts';
import { MiB } from '../../../src/memory/range.ts';
import { crashkernelParam, makePlan, REASON_CRASH_FITS } from '../../../src/plan/plan.ts';
import { ARM64_ELFCOREHDR_ALIGN, elfcorehdrRequest, segmentRequests } from '../../../src/plan/requests.ts';
import { reserveSize } from '../../../src/plan/reserve.ts';
import { formatPlan } from '../../../src/plan/format.ts';
import { crashRegions } from '../../../src/crash/regions.ts';
import { ARM64_CRASH_IOMEM, X86_CRASH_IOMEM } from '../crash/fixtures.ts';
import { arm64Image, bzImage } from './images.ts';

const X86 = parseIomem(X86_CRASH_IOMEM);
const ARM = parseIomem(ARM64_CRASH_IOMEM);
const x86Region = crashRegions(X86, 'iomem')!.main;
const armRegion = crashRegions(ARM, 'iomem')!.main;

test('x86_64: everything in the crash region, the header on top, nothing to relocate', () => {
  const requests = [elfcorehdrRequest('x86_64', 0x1000n), ...segmentRequests(bzImage(), { initrd: 8n * MiB })];
  const plan = makePlan({ arch: 'x86_64', requests, memory: memoryMapFromIomem(X86), strategy: 'crash', crashRegion: x86Region });
  assert.equal(plan.strategy, 'crash');
  assert.equal(plan.reason, REASON_CRASH_FITS);
  assert.equal(plan.bytesToRelocate, 0n);
  assert.deepEqual(plan.region, x86Region);
  for (const s of plan.segments) assert.ok(s.mem >= x86Region.start && s.mem + s.memsz <= x86Region.end, `${s.role} inside crashk_res`);
  assert.equal(plan.segments.find((s) => s.role === 'elfcorehdr')!.mem, x86Region.end - 0x1000n);
  assert.match(formatPlan(plan), /strategy crash: payload fits the crash kernel region; crash kernel region 0x28000000-0x37ffffff \(256 MiB, \d+% used\); bytesToRelocate 0/);
});

test('arm64: the header 64 KiB aligned at the top, the kernel at the bottom, the rest above it', () => {
  const requests = [elfcorehdrRequest('arm64', 0x1000n), ...segmentRequests(arm64Image(), { initrd: 8n * MiB, dtb: 0x2000n })];
  const plan = makePlan({ arch: 'arm64', requests, memory: memoryMapFromIomem(ARM), strategy: 'crash', crashRegion: armRegion });
  const at = (role: string) => plan.segments.find((s) => s.role === role)!.mem;
  assert.equal(at('elfcorehdr') % ARM64_ELFCOREHDR_ALIGN, 0n);
  assert.equal(at('elfcorehdr'), armRegion.end - ARM64_ELFCOREHDR_ALIGN);
  assert.equal(at('kernel') - (plan.segments.find((s) => s.role === 'kernel')!.offset ?? 0n), armRegion.start);
  for (const r of ['dtb', 'initrd', 'purgatory']) assert.ok(at(r) > at('kernel'), `${r} above the kernel`);
});

test('no crashkernel=, and a region too small: one clear error each', () => {
  const requests = [elfcorehdrRequest('x86_64', 0x1000n), ...segmentRequests(bzImage(), { initrd: 300n * MiB })];
  assert.throws(
    () => makePlan({ arch: 'x86_64', requests, memory: memoryMapFromIomem(X86), strategy: 'crash' }),
    (e: unknown) => e instanceof PlanError && e.code === 'no-crash-region' && /boot with crashkernel=SIZE/.test(e.remedy ?? ''),
  );
  const need = reserveSize(requests);
  assert.throws(
    () => makePlan({ arch: 'x86_64', requests, memory: memoryMapFromIomem(X86), strategy: 'crash', crashRegion: x86Region }),
    (e: unknown) =>
      e instanceof PlanError && e.code === 'crash-too-small' &&
      e.message.includes(`too small by ${need - 256n * MiB} bytes`) &&
      e.remedy!.includes(crashkernelParam(need)),
  );
  assert.equal(crashkernelParam(257n * MiB - 1n), 'crashkernel=257M');
});
