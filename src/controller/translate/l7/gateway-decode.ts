/**
 * Raw `networking.istio.io` Gateway objects (parsed YAML or the API server's JSON) → IstioGateway
 * (kube-types.ts), validated as istiod's ValidateGateway does (pkg/config/validation), every problem
 * with its field path (`spec.servers[1].tls.mode`). An object with an error is not returned; unknown
 * fields are errors, as for VirtualServices (decode.ts). Pure.
 *
 * Checks beyond the field shapes: every server has a port (number, name, protocol), at least one
 * host (`[namespace/]dnsName`, the namespace `*`, `.` or a DNS label, the name possibly a wildcard),
 * and TLS settings that fit its protocol: HTTPS and TLS need `tls`; SIMPLE and MUTUAL need a
 * certificate (a `credentialName`, or `serverCertificate` and `privateKey` files), MUTUAL a CA to
 * check clients with; PASSTHROUGH and AUTO_PASSTHROUGH only on TLS servers. Conflicts between
 * servers (the same port with two protocols, two TLS servers for one host) are found when the
 * Gateways of one selector are put together (gateway-translate.ts), since they may span objects.
 */
import type { IstioGateway, IstioGatewayServer, IstioServerTls } from '../kube-types.ts';
import { ISTIO_NETWORKING_VERSIONS, isRecord, Reader, type Decoded } from './decode.ts';
import type { L7Problem } from './types.ts';
import { checkWildcardDomain, isDns1123Label } from './values.ts';

const GATEWAY_FIELDS = ['selector', 'servers'];
const SERVER_FIELDS = ['port', 'hosts', 'tls', 'name', 'bind', 'defaultEndpoint'];
const PORT_FIELDS = ['number', 'name', 'protocol', 'targetPort'];
const TLS_FIELDS = [
  'httpsRedirect',
  'mode',
  'serverCertificate',
  'privateKey',
  'caCertificates',
  'caCrl',
  'credentialName',
  'credentialNames',
  'subjectAltNames',
  'verifyCertificateSpki',
  'verifyCertificateHash',
  'minProtocolVersion',
  'maxProtocolVersion',
  'cipherSuites',
];

/** Istio's server protocols (protocol.Parse), upper-case. */
export const SERVER_PROTOCOLS = [
  'HTTP',
  'HTTPS',
  'HTTP2',
  'GRPC',
  'GRPC-WEB',
  'TCP',
  'TLS',
  'MONGO',
] as const;
export const TLS_MODES = [
  'PASSTHROUGH',
  'SIMPLE',
  'MUTUAL',
  'AUTO_PASSTHROUGH',
  'ISTIO_MUTUAL',
  'OPTIONAL_MUTUAL',
] as const;
const TLS_VERSIONS = ['TLS_AUTO', 'TLSV1_0', 'TLSV1_1', 'TLSV1_2', 'TLSV1_3'] as const;
const DEFAULT_NAMESPACE = 'default';

/** True for an Istio Gateway (by apiVersion and kind), as opposed to a Gateway API one. */
export function isIstioGateway(obj: unknown): boolean {
  return (
    isRecord(obj) &&
    obj.kind === 'Gateway' &&
    typeof obj.apiVersion === 'string' &&
    ISTIO_NETWORKING_VERSIONS.includes(obj.apiVersion)
  );
}

export function decodeIstioGateway(obj: unknown): Decoded<IstioGateway> {
  const r = new Reader();
  const top = r.object(obj, '', undefined);
  const meta = r.object(top?.metadata, 'metadata', undefined);
  const name = r.string(meta?.name, 'metadata.name');
  const namespace = r.string(meta?.namespace, 'metadata.namespace') || DEFAULT_NAMESPACE;
  const created = meta?.creationTimestamp;
  const creationTimestamp =
    created instanceof Date
      ? created.toISOString().replace(/\.000Z$/, 'Z')
      : r.string(created, 'metadata.creationTimestamp');
  const problems = (): L7Problem[] =>
    r.problems.map((p) => ({ ...p, kind: 'Gateway' as const, namespace, name }));
  if (top === undefined) return { value: undefined, problems: problems() };
  if (!isIstioGateway(top))
    r.error('apiVersion', `must be one of ${ISTIO_NETWORKING_VERSIONS.join(', ')} with kind Gateway`);
  if (!name) r.error('metadata.name', 'is required');
  const spec = r.object(top.spec, 'spec', GATEWAY_FIELDS);
  const selector: Record<string, string> = {};
  for (const [k, v] of r.entries(spec?.selector, 'spec.selector', (v, p) => r.string(v, p))) selector[k] = v;
  const servers = r.list(spec?.servers, 'spec.servers', (v, p) => server(r, v, p));
  if (spec === undefined || !Array.isArray(spec.servers) || spec.servers.length === 0)
    r.error('spec.servers', 'at least one server is required');
  const portNames = new Map<string, number>();
  servers.forEach((s, i) => {
    const first = portNames.get(s.port.name);
    if (s.port.name && first !== undefined && servers[first]!.port.number !== s.port.number)
      r.error(
        `spec.servers[${i}].port.name`,
        `"${s.port.name}" is also the name of spec.servers[${first}].port (port ${servers[first]!.port.number}); port names must be unique`,
      );
    else if (first === undefined) portNames.set(s.port.name, i);
  });
  const value: IstioGateway = {
    namespace,
    name,
    creationTimestamp,
    selector,
    servers,
  };
  return { value: r.hasErrors() ? undefined : value, problems: problems() };
}

function server(r: Reader, v: unknown, p: string): IstioGatewayServer | undefined {
  const s = r.object(v, p, SERVER_FIELDS);
  if (s === undefined) {
    r.error(p, 'must be an object');
    return undefined;
  }
  const portObj = r.object(s.port, `${p}.port`, PORT_FIELDS);
  if (portObj === undefined) r.error(`${p}.port`, 'is required');
  const number = r.optionalInteger(portObj?.number, `${p}.port.number`, 1, 65535, 'is not a port (1-65535)');
  if (portObj !== undefined && portObj.number === undefined) r.error(`${p}.port.number`, 'is required');
  const portName = r.string(portObj?.name, `${p}.port.name`);
  if (portObj !== undefined && !portName)
    r.error(`${p}.port.name`, 'is required (Istio: port name must be set)');
  const rawProtocol = r.string(portObj?.protocol, `${p}.port.protocol`);
  const protocol = rawProtocol.toUpperCase();
  if (portObj !== undefined && !rawProtocol) r.error(`${p}.port.protocol`, 'is required');
  else if (rawProtocol && !(SERVER_PROTOCOLS as readonly string[]).includes(protocol))
    r.error(`${p}.port.protocol`, `"${rawProtocol}" must be one of ${SERVER_PROTOCOLS.join(', ')}`);
  if (portObj?.targetPort !== undefined)
    r.warn(`${p}.port.targetPort`, 'is deprecated and ignored (the gateway listens on port.number)');

  const hosts = r.stringList(s.hosts, `${p}.hosts`);
  if (hosts.length === 0) r.error(`${p}.hosts`, 'at least one host is required');
  hosts.forEach((h, i) => {
    const err = checkServerHost(h);
    if (err) r.error(`${p}.hosts[${i}]`, err);
  });
  const bind = r.string(s.bind, `${p}.bind`);
  if (bind) r.warn(`${p}.bind`, 'is not honoured yet: the gateway listens on its own address');
  if (s.defaultEndpoint !== undefined)
    r.warn(`${p}.defaultEndpoint`, 'applies to sidecars only; ignored on a gateway');
  const tls = s.tls === undefined || s.tls === null ? undefined : serverTls(r, s.tls, `${p}.tls`);
  const needsTls = protocol === 'HTTPS' || protocol === 'TLS';
  if (needsTls && tls === undefined)
    r.error(`${p}.tls`, `is required for a ${protocol} server (server must have TLS settings)`);
  if (tls) checkTlsForProtocol(r, tls, protocol, `${p}.tls`);
  return {
    port: { number: number ?? 0, name: portName, protocol },
    hosts,
    tls,
    name: r.string(s.name, `${p}.name`),
    bind,
  };
}

/** `[namespace/]dnsName`: the namespace `*`, `.` or a DNS label; the name a DNS name, `*.` wildcards allowed. */
export function checkServerHost(host: string): string | undefined {
  const parts = host.split('/');
  if (parts.length > 2) return `"${host}" must be [namespace/]dnsName`;
  const [ns, dns] = parts.length === 2 ? [parts[0]!, parts[1]!] : ['*', parts[0]!];
  if (ns !== '*' && ns !== '.' && !isDns1123Label(ns))
    return `"${host}": the namespace "${ns}" must be *, . or a namespace name`;
  if (dns === '*') return undefined;
  const err = checkWildcardDomain(dns);
  return err ? `"${host}": ${err}` : undefined;
}

function serverTls(r: Reader, v: unknown, p: string): IstioServerTls | undefined {
  const t = r.object(v, p, TLS_FIELDS);
  if (t === undefined) return undefined;
  for (const f of [
    'caCrl',
    'credentialNames',
    'verifyCertificateSpki',
    'verifyCertificateHash',
    'cipherSuites',
  ])
    if (t[f] !== undefined) r.warn(`${p}.${f}`, 'is not honoured by Ambit yet; ignored');
  return {
    httpsRedirect: r.boolean(t.httpsRedirect, `${p}.httpsRedirect`) ?? false,
    mode: r.enumValue(t.mode, `${p}.mode`, TLS_MODES) ?? '',
    credentialName: r.string(t.credentialName, `${p}.credentialName`),
    serverCertificate: r.string(t.serverCertificate, `${p}.serverCertificate`),
    privateKey: r.string(t.privateKey, `${p}.privateKey`),
    caCertificates: r.string(t.caCertificates, `${p}.caCertificates`),
    subjectAltNames: r.stringList(t.subjectAltNames, `${p}.subjectAltNames`),
    minProtocolVersion: r.enumValue(t.minProtocolVersion, `${p}.minProtocolVersion`, TLS_VERSIONS) ?? '',
    maxProtocolVersion: r.enumValue(t.maxProtocolVersion, `${p}.maxProtocolVersion`, TLS_VERSIONS) ?? '',
  };
}

function checkTlsForProtocol(r: Reader, tls: IstioServerTls, protocol: string, p: string): void {
  const mode = tls.mode || 'SIMPLE';
  if (tls.httpsRedirect && protocol !== 'HTTP')
    r.warn(`${p}.httpsRedirect`, `only applies to HTTP servers; ignored on ${protocol}`);
  if (protocol === 'HTTP' || protocol === 'HTTP2' || protocol === 'GRPC' || protocol === 'GRPC-WEB') {
    if (tls.mode || tls.serverCertificate || tls.credentialName)
      r.warn(p, `a ${protocol} server is plaintext: only httpsRedirect applies; the rest is ignored`);
    return;
  }
  if ((mode === 'PASSTHROUGH' || mode === 'AUTO_PASSTHROUGH') && protocol !== 'TLS')
    r.error(`${p}.mode`, `${mode} needs protocol TLS (this server is ${protocol})`);
  if (mode === 'SIMPLE' || mode === 'MUTUAL' || mode === 'OPTIONAL_MUTUAL') {
    if (!tls.credentialName) {
      if (!tls.serverCertificate)
        r.error(`${p}.serverCertificate`, `is required for mode ${mode} (or set credentialName)`);
      if (!tls.privateKey) r.error(`${p}.privateKey`, `is required for mode ${mode} (or set credentialName)`);
    }
    if (mode !== 'SIMPLE' && !tls.credentialName && !tls.caCertificates)
      r.error(`${p}.caCertificates`, `is required for mode ${mode}: the CA that signs client certificates`);
  }
  if (tls.credentialName && (tls.serverCertificate || tls.privateKey))
    r.error(`${p}.credentialName`, 'is set together with serverCertificate/privateKey: set one or the other');
  if (tls.minProtocolVersion && tls.maxProtocolVersion) {
    const order = (v: string) => (TLS_VERSIONS as readonly string[]).indexOf(v);
    if (
      tls.maxProtocolVersion !== 'TLS_AUTO' &&
      order(tls.minProtocolVersion) > order(tls.maxProtocolVersion)
    )
      r.error(
        `${p}.minProtocolVersion`,
        `${tls.minProtocolVersion} is above maxProtocolVersion ${tls.maxProtocolVersion}`,
      );
  }
}
