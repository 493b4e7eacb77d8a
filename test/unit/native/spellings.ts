/**
 * The command lines the native program execs itself, and a selection of
 * those it must hand to the Node CLI: shared by the tests of the program
 * and of the CLI, which must agree on what each one means.
 */

/** name: what the program is invoked as; noSync: whether it skips sync(). */
export const EXEC_SPELLINGS: { name: 'kexec' | 'qkexec'; args: string[]; noSync: boolean }[] = [
  { name: 'kexec', args: ['-e'], noSync: false },
  { name: 'kexec', args: ['--exec'], noSync: false },
  { name: 'kexec', args: ['-f'], noSync: false },
  { name: 'kexec', args: ['--force'], noSync: false },
  { name: 'kexec', args: ['-e', '-x'], noSync: false },
  { name: 'kexec', args: ['-e', '-y'], noSync: true },
  { name: 'kexec', args: ['-ey'], noSync: true },
  { name: 'kexec', args: ['-yxe'], noSync: true },
  { name: 'kexec', args: ['-f', '--no-sync'], noSync: true },
  { name: 'kexec', args: ['--exec', '--no-ifdown', '--no-sync'], noSync: true },
  { name: 'qkexec', args: ['-e'], noSync: false },
  { name: 'qkexec', args: ['exec'], noSync: false },
  { name: 'qkexec', args: ['exec', '--no-sync'], noSync: true },
  { name: 'qkexec', args: ['exec', '-y'], noSync: true },
  { name: 'qkexec', args: ['exec', '-xy'], noSync: true },
  { name: 'qkexec', args: ['exec', '--no-ifdown'], noSync: false },
  { name: 'kexec', args: ['exec'], noSync: false },
];

/** Close relatives of the above that only the Node CLI handles. */
export const NODE_SPELLINGS: { name: 'kexec' | 'qkexec'; args: string[] }[] = [
  { name: 'qkexec', args: [] },
  { name: 'kexec', args: [] },
  { name: 'qkexec', args: ['status', '--json'] },
  { name: 'kexec', args: ['-l', '/boot/vmlinuz', '--initrd=/boot/initrd.img', '--append=root=/dev/vda  quiet "x"'] },
  { name: 'kexec', args: ['/boot/vmlinuz'] },
  { name: 'qkexec', args: ['/boot/vmlinuz'] },
  { name: 'kexec', args: ['-f', '/boot/vmlinuz'] },
  { name: 'kexec', args: ['-e', '-d'] },
  { name: 'kexec', args: ['-e', '--'] },
  { name: 'kexec', args: ['-e', '-i'] },
  { name: 'kexec', args: ['--exec=1'] },
  { name: 'kexec', args: ['--exe'] },
  { name: 'kexec', args: ['-E'] },
  { name: 'kexec', args: ['-'] },
  { name: 'kexec', args: [''] },
  { name: 'kexec', args: ['--no-sync'] },
  { name: 'kexec', args: ['-y', '-x'] },
  { name: 'qkexec', args: ['exec', '--dry-run'] },
  { name: 'qkexec', args: ['exec', '--verbose'] },
  { name: 'qkexec', args: ['exec', '-e'] },
  { name: 'qkexec', args: ['exec', '-y', 'extra'] },
  { name: 'qkexec', args: ['exec', ''] },
  { name: 'qkexec', args: ['EXEC'] },
  { name: 'qkexec', args: ['-e', 'ünïcödé and spaces'] },
];
