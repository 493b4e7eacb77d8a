/**
 * Kernels signed for kexec_file_load's verification: the lab's own key
 * (kernel/build --signing-key prints its directory, making it when
 * missing), whose certificate the lab kernels build into their trusted
 * keyring, applied with sbsign (sbsigntool) as a distribution signs its
 * kernels for UEFI secure boot. Cached by the hash of the image and the
 * certificate.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cachePath, tmpBeside } from '../cache.ts';
import { run } from '../host.ts';

/** The directory holding lab-signing.key and lab-signing.crt. */
export async function labSigningKey(): Promise<{ key: string; cert: string }> {
  const script = new URL('../../../kernel/build', import.meta.url).pathname;
  const dir = (await run(script, ['--signing-key'])).stdout.trim().split('\n').pop() ?? '';
  const key = join(dir, 'lab-signing.key');
  const cert = join(dir, 'lab-signing.crt');
  if (!existsSync(key) || !existsSync(cert)) throw new Error(`kernel/build --signing-key printed "${dir}", which holds no lab-signing.key and lab-signing.crt`);
  return { key, cert };
}

/** `kernel` signed with the lab key (a copy in the lab cache). */
export async function signedWithLabKey(kernel: string): Promise<string> {
  const { key, cert } = await labSigningKey();
  const h = createHash('sha256').update(await readFile(kernel)).update(await readFile(cert)).digest('hex').slice(0, 16);
  const dir = cachePath('signed');
  const out = join(dir, `${h}.efi`);
  if (existsSync(out)) return out;
  await mkdir(dir, { recursive: true });
  const tmp = tmpBeside(out);
  try {
    await run('sbsign', ['--key', key, '--cert', cert, '--output', tmp, kernel]);
    await rename(tmp, out);
  } finally {
    await rm(tmp, { force: true });
  }
  return out;
}
