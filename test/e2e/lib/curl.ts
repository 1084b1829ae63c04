/**
 * The real curl and openssl for e2e tests: run a command, curl with its status code, poll until a
 * probe answers, and a test CA with leaf certificates made by openssl.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** curl's status code and body (`-w` appends the code on its own line). */
export async function curl(...args: string[]): Promise<{ status: number; body: string; stderr: string }> {
  const r = await run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args]);
  const i = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i), stderr: r.stderr };
}

/** Polls `f` every 250 ms until it gives a value, for at most `timeoutMs`. */
export async function until<T>(
  what: string,
  f: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Runs openssl; a failure fails the test with its stderr. */
export async function openssl(...args: string[]): Promise<void> {
  const r = await run('openssl', args);
  assert.equal(r.code, 0, r.stderr);
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
const DAYS = ['-days', '2'];

/** `<dir>/<name>.pem` and `.key`: an ECDSA P-256 leaf, subject `/CN=<name>`, `san`, signed by the CA given. */
export async function issueLeaf(
  dir: string,
  name: string,
  san: string,
  caCert: string,
  caKey: string,
): Promise<void> {
  const at = (ext: string) => join(dir, `${name}.${ext}`);
  await openssl('req', ...EC_KEY, '-subj', `/CN=${name}`, '-keyout', at('key'), '-out', at('csr'));
  await writeFile(at('ext'), `subjectAltName=${san}\n`);
  const ca = ['-CA', caCert, '-CAkey', caKey, '-CAcreateserial'];
  await openssl('x509', '-req', '-in', at('csr'), ...ca, ...DAYS, '-extfile', at('ext'), '-out', at('pem'));
}

/**
 * A test CA (`ca.pem`, `ca.key`) and, per `[name, subjectAltName]`, a leaf `<name>.pem` /
 * `<name>.key` it signs, all ECDSA P-256, made by openssl in `dir`.
 */
export async function makePki(dir: string, leaves: readonly (readonly [string, string])[]): Promise<void> {
  const [caCert, caKey] = [join(dir, 'ca.pem'), join(dir, 'ca.key')];
  await openssl('req', '-x509', ...EC_KEY, ...DAYS, '-subj', '/O=test-ca', '-keyout', caKey, '-out', caCert);
  for (const [name, san] of leaves) await issueLeaf(dir, name, san, caCert, caKey);
}
