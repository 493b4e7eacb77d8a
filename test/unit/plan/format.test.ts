import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIomem } from '../../../src/memory/iomem.ts';
import { memoryMapFromIomem } from '../../../src/memory/map.ts';
import { MiB } from '../../../src/memory/range.ts';
import { formatPlan, planToJson, regionUsePercent } from '../../../src/plan/format.ts';
import { makePlan } from '../../../src/plan/plan.ts';
import { segmentRequests } from '../../../src/plan/requests.ts';
import { planSvg } from '../../../src/plan/svg.ts';
import { ARM64_VIRT_IOMEM, X86_64_QEMU_IOMEM } from '../memory/iomem-fixtures.ts';
import { arm64Image, bzImage } from './images.ts';

const x86 = memoryMapFromIomem(parseIomem(X86_64_QEMU_IOMEM));
const arm = memoryMapFromIomem(parseIomem(ARM64_VIRT_IOMEM));
const x86Plan = makePlan({ arch: 'x86_64', requests: segmentRequests(bzImage(), { initrd: 40n * MiB }), memory: x86, strategy: 'auto' });
const armStd = makePlan({ arch: 'arm64', requests: segmentRequests(arm64Image(), { initrd: 24n * MiB, dtb: 0x2000n }), memory: arm, strategy: 'standard' });

test('formatPlan: one row per segment by address, inclusive ends, and the summary', () => {
  const text = formatPlan(x86Plan);
  assert.equal(
    text,
    [
      'role              start         end  size          align',
      'boot_params  0x39000000  0x39001fff  8 KiB        0x1000',
      'purgatory    0x39002000  0x39002fff  4 KiB        0x1000',
      'initrd       0x39c00000  0x3c3fffff  40 MiB       0x1000',
      'kernel       0x3c400000  0x3ee3bfff  42.23 MiB  0x200000',
      'strategy quick: payload fits the Quick kexec region; region 0x39000000-0x3effffff (96 MiB, 85% used); bytesToRelocate 0 (0 bytes); entry 0x39002000',
      '',
    ].join('\n'),
  );
  assert.equal(regionUsePercent(x86Plan), 85);
  assert.match(formatPlan(armStd), /^strategy standard: standard path requested; region 0x70000000-0x75ffffff \(96 MiB, unused\); bytesToRelocate 46739456 \(44\.57 MiB\); entry 0x43690000$/m);
});

test('planToJson: bigints as hex strings, survives JSON.stringify', () => {
  const j = planToJson(armStd);
  const back = JSON.parse(JSON.stringify(j));
  assert.deepEqual(back, j);
  assert.equal(j.entry, '0x43690000');
  assert.equal(j.bytesToRelocate, '0x2c93000');
  assert.deepEqual(j.region, { start: '0x70000000', end: '0x76000000' });
  const dtb = j.segments.find((s) => s.role === 'dtb')!;
  // min/max are the window it was placed in: above the kernel (0x42200000), below 1 GiB-aligned base + 32 GiB.
  assert.deepEqual(dtb, {
    role: 'dtb', mem: '0x43800000', memsz: '0x2000', bufsz: '0x2000', align: '0x200000', min: '0x42200000', max: '0x840000000', footprint: '0x200000',
  });
});

test('planSvg: a well-formed drawing with RAM, reservations, the region and every segment', () => {
  for (const [plan, memory] of [[x86Plan, x86], [armStd, arm]] as const) {
    const svg = planSvg(plan, memory);
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="\d+" height="\d+"/);
    assert.match(svg, /<\/svg>\n$/);
    // Tags balance (a tiny well-formedness check; the drawing has no text nodes containing '<').
    const open = (svg.match(/<(rect|text|title|svg)\b[^>]*(?<!\/)>/g) ?? []).length;
    const close = (svg.match(/<\/(rect|text|title|svg)>/g) ?? []).length;
    assert.equal(open, close);
    for (const s of plan.segments) assert.ok(svg.includes(`<title>${s.role} 0x${s.mem.toString(16)}-`), `${s.role} drawn`);
    assert.ok(svg.includes('<title>Quick kexec 0x'));
    for (const r of memory.reserved.filter((r) => r.name !== 'Quick kexec')) assert.ok(svg.includes(`<title>${r.name} 0x${r.range.start.toString(16)}-`), r.name);
  }
  // Names come from /proc/iomem: they are escaped.
  const odd = { ...arm, reserved: [...arm.reserved, { range: { start: 0x7f000000n, end: 0x7f001000n }, name: 'a<b & "c"' }] };
  const svg = planSvg(armStd, odd);
  assert.ok(svg.includes('a&lt;b &amp; &quot;c&quot;'));
  assert.ok(!svg.includes('a<b'));
});
