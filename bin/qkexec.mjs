#!/usr/bin/env node
// The installed `qkexec` command. Runs the bundled CLI, dist/qkexec.mjs
// (`npm run bundle -- --arch <this machine's arch> --out dist`), when it is
// there; in a development checkout without it, the TypeScript sources
// through tsx. Symlinked as `kexec`, it takes kexec-tools' command line.
import { existsSync } from 'node:fs';

const bundled = new URL('../dist/qkexec.mjs', import.meta.url);
let cli;
if (existsSync(bundled)) {
  cli = await import(bundled.href);
} else {
  try {
    const { register } = await import('tsx/esm/api');
    register();
  } catch {
    process.stderr.write('qkexec: not built (no dist/qkexec.mjs) and tsx is not installed — run: npm run bundle -- --arch x86_64 --out dist (or arm64)\n');
    process.exit(1);
  }
  cli = await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
await cli.run();
