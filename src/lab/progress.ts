/**
 * Progress for the lab's long steps (downloads, image builds, guest runs).
 * On a terminal: a cli-progress bar (when the amount of work is known) or a
 * spinner with elapsed time. In CI (stdout not a TTY): one line when a step
 * starts and one when it ends, so logs stay short and greppable.
 * Everything goes to stderr; stdout is left for tables and JSON.
 */
import cliProgress from 'cli-progress';

export interface StepProgress {
  /** Switch to a bar: the step has `total` units of work. */
  total(n: number, unit?: string): void;
  update(done: number): void;
  /** A short status after the label ("downloading linux-image-…"). */
  note(text: string): void;
}

export interface Reporter {
  step<T>(label: string, fn: (p: StepProgress) => Promise<T>): Promise<T>;
  info(msg: string): void;
}

const noProgress: StepProgress = { total() {}, update() {}, note() {} };

export const silentReporter: Reporter = {
  step: (_label, fn) => fn(noProgress),
  info() {},
};

function seconds(t0: bigint): string {
  return `${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s`;
}

/** Line-based: CI logs, or when asked to be plain. */
export function lineReporter(write: (s: string) => void = (s) => process.stderr.write(s)): Reporter {
  return {
    async step(label, fn) {
      const t0 = process.hrtime.bigint();
      write(`[lab] ${label} …\n`);
      try {
        const r = await fn({ total() {}, update() {}, note: (t) => write(`[lab]   ${t}\n`) });
        write(`[lab] ${label}: done in ${seconds(t0)}\n`);
        return r;
      } catch (e) {
        write(`[lab] ${label}: FAILED after ${seconds(t0)}\n`);
        throw e;
      }
    },
    info: (msg) => write(`[lab] ${msg}\n`),
  };
}

const SPIN = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';

export function ttyReporter(stream: NodeJS.WriteStream = process.stderr): Reporter {
  return {
    async step(label, fn) {
      const t0 = process.hrtime.bigint();
      let note = '';
      let bar: cliProgress.SingleBar | undefined;
      let frame = 0;
      const draw = (): void => {
        if (bar) return;
        stream.write(`\r\x1b[K${SPIN[frame++ % SPIN.length]} ${label} ${note} (${seconds(t0)})`);
      };
      const timer = setInterval(draw, 100);
      const p: StepProgress = {
        total(n, unit = '') {
          if (bar) return;
          stream.write('\r\x1b[K');
          bar = new cliProgress.SingleBar(
            { format: `${label} [{bar}] {percentage}% {value}/{total}${unit}`, stream, clearOnComplete: true, hideCursor: null },
            cliProgress.Presets.shades_classic,
          );
          bar.start(n, 0);
        },
        update: (done) => bar?.update(done),
        note: (t) => {
          note = t;
        },
      };
      draw();
      let mark = '✗';
      try {
        const r = await fn(p);
        mark = '✓';
        return r;
      } finally {
        clearInterval(timer);
        bar?.stop();
        stream.write(`\r\x1b[K${mark} ${label} (${seconds(t0)})\n`);
      }
    },
    info: (msg) => stream.write(`${msg}\n`),
  };
}

/** The reporter for this process: bars on a terminal, lines in CI. */
export function defaultReporter(): Reporter {
  return process.stdout.isTTY && process.stderr.isTTY ? ttyReporter() : lineReporter();
}
