/**
 * The pure parts of the waypoint's TLS origination: the SNI (Envoy's auto_sni), the ALPN offered,
 * Node's SAN text parsed, and the identity check (SAN matchers with DNS wildcards, auto SAN
 * validation against the SNI, nothing without a validation context).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { UpstreamTls } from '../../../src/core/xds/l7-model.ts';
import {
  alpnFor,
  checkPeerIdentity,
  parseSubjectAltNames,
  serverNameFor,
} from '../../../src/waypoint/upstream-tls.ts';

const BASE: UpstreamTls = {
  sni: '',
  autoSni: false,
  autoSanValidation: false,
  verify: { trustedCa: undefined, crl: undefined, subjectAltNames: [] },
  clientCertificate: undefined,
  alpnProtocols: [],
  minVersion: undefined,
  maxVersion: undefined,
  cipherSuites: [],
  ecdhCurves: [],
};
const tls = (over: Partial<UpstreamTls>): UpstreamTls => ({ ...BASE, ...over });
const exact = (value: string, type?: 'DNS' | 'URI' | 'IP_ADDRESS' | 'EMAIL') => ({
  type,
  matcher: { kind: 'exact' as const, value, ignoreCase: false },
});

test('SNI: the configured one, else the request host without its port (auto_sni), never an IP', () => {
  const cases: [Partial<UpstreamTls>, string | undefined, string | undefined][] = [
    [{ sni: 'fixed.example' }, 'api.example.com:443', 'fixed.example'],
    [{ autoSni: true }, 'API.example.com:8443', 'api.example.com'],
    [{ autoSni: true }, 'api.example.com', 'api.example.com'],
    [{ autoSni: true }, '10.1.2.3:443', undefined],
    [{ autoSni: true }, '[fd00::1]:443', undefined],
    [{ autoSni: true }, undefined, undefined],
    [{}, 'api.example.com', undefined],
  ];
  for (const [over, authority, want] of cases)
    assert.equal(serverNameFor(tls(over), authority), want, `${JSON.stringify(over)} ${authority}`);
});

test('ALPN: the configured list, else the protocol spoken', () => {
  assert.deepEqual(alpnFor(tls({}), 'http/1.1'), ['http/1.1']);
  assert.deepEqual(alpnFor(tls({}), 'h2'), ['h2']);
  assert.deepEqual(alpnFor(tls({ alpnProtocols: ['h2'] }), 'http/1.1'), ['h2']);
});

test("Node's subjectaltname text, quoted values included", () => {
  assert.deepEqual(
    parseSubjectAltNames(
      'DNS:a.example.com, DNS:*.b.example.com, IP Address:10.0.0.1, URI:spiffe://td/ns/a/sa/b, email:x@y.z, DNS:"c,d"',
    ),
    [
      { type: 'DNS', value: 'a.example.com' },
      { type: 'DNS', value: '*.b.example.com' },
      { type: 'IP_ADDRESS', value: '10.0.0.1' },
      { type: 'URI', value: 'spiffe://td/ns/a/sa/b' },
      { type: 'EMAIL', value: 'x@y.z' },
      { type: 'DNS', value: 'c,d' },
    ],
  );
  assert.deepEqual(parseSubjectAltNames(undefined), []);
});

test('identity check: SAN matchers (DNS wildcards, typed), auto SAN validation, none without verification', () => {
  const cert = { subjectaltname: 'DNS:*.example.com, URI:spiffe://td/ns/a/sa/b', subject: { CN: 'x' } };
  const cases: [string, UpstreamTls, string | undefined, boolean][] = [
    [
      'exact DNS through a wildcard',
      tls({ verify: { ...BASE.verify!, subjectAltNames: [exact('api.example.com')] } }),
      undefined,
      true,
    ],
    [
      'wildcard covers one label only',
      tls({ verify: { ...BASE.verify!, subjectAltNames: [exact('a.b.example.com')] } }),
      undefined,
      false,
    ],
    [
      'URI of any type',
      tls({ verify: { ...BASE.verify!, subjectAltNames: [exact('spiffe://td/ns/a/sa/b')] } }),
      undefined,
      true,
    ],
    [
      'URI asked as DNS',
      tls({ verify: { ...BASE.verify!, subjectAltNames: [exact('spiffe://td/ns/a/sa/b', 'DNS')] } }),
      undefined,
      false,
    ],
    [
      'a regex over the URI',
      tls({
        verify: {
          ...BASE.verify!,
          subjectAltNames: [{ type: 'URI', matcher: { kind: 'regex', regex: 'spiffe://td/ns/a/sa/.*' } }],
        },
      }),
      undefined,
      true,
    ],
    [
      'one of several',
      tls({ verify: { ...BASE.verify!, subjectAltNames: [exact('other.org'), exact('x.example.com')] } }),
      undefined,
      true,
    ],
    ['auto SAN: the SNI matches', tls({ autoSanValidation: true }), 'api.example.com', true],
    ['auto SAN: the SNI does not', tls({ autoSanValidation: true }), 'api.example.org', false],
    ['no SANs, no auto: chain only', tls({}), 'api.example.org', true],
    ['not verified at all', tls({ verify: undefined, autoSanValidation: true }), 'api.example.org', true],
  ];
  for (const [name, t, serverName, ok] of cases) {
    const why = checkPeerIdentity(t, serverName, cert);
    assert.equal(why === undefined, ok, `${name}: ${why}`);
  }
});
