// Real device trees for tests: QEMU's dumps (see test/fixtures/fdt/README.md).
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

const dir = new URL('../../fixtures/fdt/', import.meta.url);

/** `-M virt` dump: /chosen has stdout-path, rng-seed and kaslr-seed, no bootargs. */
export function qemuVirtDtb(): Uint8Array {
  return new Uint8Array(gunzipSync(readFileSync(new URL('qemu-virt.dtb.gz', dir))));
}

/** `-M virt` with -kernel/-initrd/-append: /chosen also has bootargs and 32-bit initrd props. */
export function qemuVirtBootDtb(): Uint8Array {
  return new Uint8Array(gunzipSync(readFileSync(new URL('qemu-virt-boot.dtb.gz', dir))));
}
