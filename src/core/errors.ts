/**
 * Typed errors with a stable `code`, a `hint` that says what to check, and a chained `cause`.
 * Expected outcomes (a denial, no route, an invalid resource) are return values, not these.
 */
export const ErrorCode = {
  ConfigInvalid: 'AMBIT_CONFIG_INVALID',
  ConfigRead: 'AMBIT_CONFIG_READ',
  CertificateInvalid: 'AMBIT_CERT_INVALID',
  CertificateUnavailable: 'AMBIT_CERT_UNAVAILABLE',
  CsrInvalid: 'AMBIT_CSR_INVALID',
  IdentityMismatch: 'AMBIT_IDENTITY_MISMATCH',
  HboneConnectFailed: 'AMBIT_HBONE_CONNECT_FAILED',
  HboneTlsFailed: 'AMBIT_HBONE_TLS_FAILED',
  HboneTimeout: 'AMBIT_HBONE_TIMEOUT',
  UpstreamConnectFailed: 'AMBIT_UPSTREAM_CONNECT_FAILED',
  BindFailed: 'AMBIT_BIND_FAILED',
  NetnsAddonUnavailable: 'AMBIT_NETNS_ADDON_UNAVAILABLE',
  NetnsSyscallFailed: 'AMBIT_NETNS_SYSCALL_FAILED',
  NetnsInvalidOption: 'AMBIT_NETNS_INVALID_OPTION',
  Shutdown: 'AMBIT_SHUTDOWN',
  CaptureFailed: 'AMBIT_CAPTURE_FAILED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface AmbitErrorOptions {
  /** What the operator should check, e.g. "is a NetworkPolicy blocking HBONE port 15008?" */
  hint?: string;
  cause?: unknown;
}

export class AmbitError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: AmbitErrorOptions = {}) {
    super(options.hint ? `${message}: ${options.hint}` : message, { cause: options.cause });
    this.name = 'AmbitError';
    this.code = code;
    this.hint = options.hint;
  }
}

/** A short, single-line description of any thrown value, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
