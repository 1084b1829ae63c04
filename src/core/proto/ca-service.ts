/**
 * `istio.v1.auth.IstioCertificateService`, the gRPC CA API (reference/ztunnel.md §3.4), defined over
 * our citadel.proto with protobufjs serialisation.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { ambitProtos } from './load.ts';

export interface CertificateRequest {
  /** PEM CSR. */
  csr: string;
  /** Requested lifetime in seconds. */
  validity_duration?: number;
  /** Struct as plain JSON, e.g. `{ ImpersonatedIdentity: 'spiffe://…' }`. */
  metadata?: Record<string, unknown>;
}

export interface CertificateResponse {
  /** Leaf first, roots last. */
  cert_chain: string[];
}

export const CREATE_CERTIFICATE_PATH = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

/** The service definition for `grpc.Server.addService` and `makeGenericClientConstructor`. */
export function caServiceDefinition(): ServiceDefinition {
  const root = ambitProtos();
  const Req = root.lookupType('istio.v1.auth.IstioCertificateRequest');
  const Res = root.lookupType('istio.v1.auth.IstioCertificateResponse');
  return {
    CreateCertificate: {
      path: CREATE_CERTIFICATE_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: (r: CertificateRequest) =>
        Buffer.from(
          Req.encode(
            Req.fromObject({
              csr: r.csr,
              validity_duration: r.validity_duration ?? 0,
              metadata: r.metadata ? structFromJson(r.metadata) : undefined,
            }),
          ).finish(),
        ),
      requestDeserialize: (b: Buffer): CertificateRequest => {
        const m = Req.toObject(Req.decode(b), { longs: Number, defaults: true }) as {
          csr: string;
          validity_duration: number;
          metadata?: { fields?: Record<string, { stringValue?: string }> };
        };
        const metadata = Object.fromEntries(
          Object.entries(m.metadata?.fields ?? {}).map(([k, v]) => [k, v.stringValue ?? '']),
        );
        return { csr: m.csr, validity_duration: m.validity_duration, metadata };
      },
      responseSerialize: (r: CertificateResponse) => Buffer.from(Res.encode(Res.fromObject(r)).finish()),
      responseDeserialize: (b: Buffer): CertificateResponse =>
        Res.toObject(Res.decode(b), { defaults: true }) as CertificateResponse,
    },
  };
}

/**
 * String-valued metadata as `google.protobuf.Struct` (all Istio puts there is strings). protobufjs's
 * built-in well-known types use camelCase field names even where our own files keep snake_case.
 */
function structFromJson(obj: Record<string, unknown>) {
  return {
    fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, { stringValue: String(v) }])),
  };
}
