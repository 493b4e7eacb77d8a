/**
 * Every failure qkexec reports is a QkexecError: it says what failed, why,
 * and what to do, so the CLI can print one clear line (and more with
 * --verbose) without guessing. Parsers of untrusted bytes throw
 * FormatError, which also names the file and the byte offset.
 */
export class QkexecError extends Error {
  /** Short machine-readable code, e.g. "EPERM", "truncated", "no-region". */
  readonly code: string;
  /** What the user can do about it; printed after the message. */
  readonly remedy?: string;

  constructor(code: string, message: string, opts: { remedy?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.remedy = opts.remedy;
  }
}

/** Bytes that do not match the format they claim to be. */
export class FormatError extends QkexecError {
  readonly file: string;
  readonly offset?: number;

  constructor(file: string, message: string, opts: { offset?: number; code?: string; remedy?: string; cause?: unknown } = {}) {
    const at = opts.offset === undefined ? '' : ` at offset 0x${opts.offset.toString(16)}`;
    super(opts.code ?? 'bad-format', `${file}: ${message}${at}`, opts);
    this.file = file;
    this.offset = opts.offset;
  }
}

/** The plan cannot be made: payload does not fit, region too small, … */
export class PlanError extends QkexecError {}

/** A syscall or a read of system state failed; carries errno when there is one. */
export class SystemError extends QkexecError {
  readonly errno?: number;
  constructor(code: string, message: string, opts: { errno?: number; remedy?: string; cause?: unknown } = {}) {
    super(code, message, opts);
    this.errno = opts.errno;
  }
}

/** What to do, for errors raised without a remedy of their own. */
export function defaultRemedy(e: QkexecError): string {
  if (e instanceof FormatError) return `check that ${e.file} is the right file and complete`;
  if (e instanceof PlanError) return 'run qkexec plan with the same arguments to see where each segment would go';
  return 'run with --verbose for details';
}

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' ').trim();

/** The one line every failing command prints: "qkexec: <what failed> -- <what to do>". */
export function errorLine(e: QkexecError): string {
  return `qkexec: ${oneLine(e.message)} -- ${oneLine(e.remedy ?? defaultRemedy(e))}`;
}
