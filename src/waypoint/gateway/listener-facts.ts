/**
 * A gateway's listeners off the wire: each Listener decodes as the waypoint decodes it (an API
 * listener whose routes come over RDS, or a TCP listener with one tcp_proxy filter for TCP and TLS
 * servers) and, when it is a gateway listener, also yields the server
 * facts from its metadata (core/xds/l7-names.ts GATEWAY_METADATA_FILTER): port, protocol, SNI hosts
 * and TLS settings. Facts that do not decode reject the whole listener with their paths, so the
 * listener's last good version stays (the ADS client NACKs it).
 */
import {
  GATEWAY_METADATA_FILTER,
  type GatewayListenerFacts,
  type GatewayTlsFacts,
} from '../../core/xds/l7-names.ts';
import type { L7Listener } from '../../core/xds/l7-model.ts';
import { decodeListener, type WireListener } from '../../core/xds/l7-decode.ts';
import { unpackAny } from '../../core/xds/l7-wire.ts';
import type { Decoded } from '../../core/xds/workload-proto.ts';

/** A decoded listener; `gateway` is set for a gateway listener. */
export type GatewayL7Listener = L7Listener & { readonly gateway?: GatewayListenerFacts };

interface WireValue {
  nullValue?: unknown;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  listValue?: { values?: WireValue[] };
  structValue?: { fields?: Record<string, WireValue> };
}

/** google.protobuf.Value as protobufjs decodes it → plain data. */
function plain(v: WireValue | undefined): unknown {
  if (v === undefined) return undefined;
  if (v.listValue !== undefined) return (v.listValue.values ?? []).map(plain);
  if (v.structValue !== undefined) return fromStruct(v.structValue);
  return v.stringValue ?? v.numberValue ?? v.boolValue ?? null;
}

function fromStruct(s: { fields?: Record<string, WireValue> }): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s.fields ?? {})) out[k] = plain(v);
  return out;
}

const AT = `metadata.filter_metadata["${GATEWAY_METADATA_FILTER}"]`;
const PROTOCOLS = ['HTTP', 'HTTPS', 'TCP', 'TLS'];

/** The server facts of a listener's metadata struct, every problem with its path. */
export function decodeGatewayFacts(
  raw: Record<string, unknown>,
): { ok: true; value: GatewayListenerFacts } | { ok: false; errors: { path: string; message: string }[] } {
  const errors: { path: string; message: string }[] = [];
  const str = (o: Record<string, unknown>, k: string, at: string): string => {
    const v = o[k];
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') errors.push({ path: `${at}.${k}`, message: 'must be a string' });
    return typeof v === 'string' ? v : '';
  };
  const strings = (o: Record<string, unknown>, k: string, at: string): string[] => {
    const v = o[k] ?? [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      errors.push({ path: `${at}.${k}`, message: 'must be a list of strings' });
      return [];
    }
    return v as string[];
  };
  const port = raw.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    errors.push({ path: `${AT}.port`, message: 'must be a port (1-65535)' });
  const protocol = str(raw, 'protocol', AT);
  if (!PROTOCOLS.includes(protocol))
    errors.push({ path: `${AT}.protocol`, message: `"${protocol}" must be one of ${PROTOCOLS.join(', ')}` });
  const hosts = strings(raw, 'hosts', AT);
  if (hosts.length === 0) errors.push({ path: `${AT}.hosts`, message: 'at least one host is required' });
  let tls: GatewayTlsFacts | undefined;
  if (raw.tls !== undefined) {
    const t = raw.tls;
    const at = `${AT}.tls`;
    if (typeof t !== 'object' || t === null || Array.isArray(t))
      errors.push({ path: at, message: 'must be a struct' });
    else {
      const o = t as Record<string, unknown>;
      tls = {
        mode: str(o, 'mode', at),
        serverCertificate: str(o, 'serverCertificate', at),
        privateKey: str(o, 'privateKey', at),
        caCertificates: str(o, 'caCertificates', at),
        credentialName: str(o, 'credentialName', at),
        subjectAltNames: strings(o, 'subjectAltNames', at),
        minProtocolVersion: str(o, 'minProtocolVersion', at),
        maxProtocolVersion: str(o, 'maxProtocolVersion', at),
      };
      const modes =
        protocol === 'TLS'
          ? ['SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL', 'PASSTHROUGH']
          : ['SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'];
      if (!modes.includes(tls.mode))
        errors.push({ path: `${at}.mode`, message: `"${tls.mode}" must be ${modes.join(' or ')}` });
    }
  }
  if ((protocol === 'HTTPS' || protocol === 'TLS') && tls === undefined && errors.length === 0)
    errors.push({ path: `${AT}.tls`, message: `is required for ${protocol}` });
  if (errors.length) return { ok: false, errors };
  return {
    ok: true,
    value: {
      port: port as number,
      protocol: protocol as GatewayListenerFacts['protocol'],
      hosts,
      servers: strings(raw, 'servers', AT),
      tls,
    },
  };
}

/** Listener bytes → the waypoint's model, plus the gateway facts when its metadata has them. */
export function decodeGatewayListenerBytes(bytes: Uint8Array): Decoded<GatewayL7Listener> {
  const r = unpackAny('envoy.config.listener.v3.Listener', bytes);
  if (!r.ok) return { ok: false, errors: [{ path: '', message: `not a Listener: ${r.message}` }] };
  const wire = r.message as WireListener & {
    metadata?: { filter_metadata?: Record<string, { fields?: Record<string, WireValue> }> };
  };
  const base = decodeListener(wire, unpackAny);
  if (!base.ok) return base;
  const struct = wire.metadata?.filter_metadata?.[GATEWAY_METADATA_FILTER];
  if (struct === undefined) return base;
  const facts = decodeGatewayFacts(fromStruct(struct));
  if (!facts.ok) return { ok: false, errors: facts.errors };
  // TCP and TLS servers proxy connections (a tcp_proxy listener); HTTP and HTTPS ones route requests.
  const tcp = facts.value.protocol === 'TCP' || facts.value.protocol === 'TLS';
  if (tcp !== (base.value.tcp !== undefined))
    return {
      ok: false,
      errors: [
        {
          path: tcp ? 'filter_chains' : 'api_listener',
          message: `a ${facts.value.protocol} server's listener must be ${tcp ? 'a tcp_proxy one' : 'an API listener'}`,
        },
      ],
    };
  return { ok: true, value: { ...base.value, gateway: facts.value } };
}
