/**
 * The CA service (`istio.v1.auth.IstioCertificateService/CreateCertificate`). A caller proves who it
 * is with a bearer token. A node agent may obtain certificates only for identities of pods scheduled
 * on its own node, named in `ImpersonatedIdentity` (reference/ztunnel.md §3.7); any other workload
 * (a waypoint) only for its own service account's identity, as istiod allows. Every refusal is a
 * gRPC status with a reason a person can act on.
 */
import {
  status,
  type Metadata,
  type sendUnaryData,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { describeError } from '../../core/errors.ts';
import type { CertificateAuthority } from '../../core/identity/ca.ts';
import { formatSpiffe, parseSpiffe } from '../../core/identity/spiffe.ts';
import type { Logger } from '../../core/log.ts';
import type { CertificateRequest, CertificateResponse } from '../../core/proto/ca-service.ts';
import { workloadSpiffe, type MeshConfig } from '../../core/xds/model.ts';

/** Who presented a token: a node agent (for the pods of its node), or one workload (for itself). */
export type Caller =
  | { readonly kind: 'node'; readonly node: string }
  | { readonly kind: 'workload'; readonly namespace: string; readonly serviceAccount: string };

/** Who a bearer token belongs to. */
export interface TokenAuthority {
  /** The caller the token was issued to; undefined if the token is not valid. */
  callerOf(token: string): Promise<Caller | undefined>;
}

export function describeCaller(c: Caller): string {
  return c.kind === 'node' ? `node ${c.node}` : `service account ${c.namespace}/${c.serviceAccount}`;
}

export interface CaServiceOptions {
  readonly ca: CertificateAuthority;
  readonly tokens: TokenAuthority;
  /** The current mesh, to see which pods run on which node. */
  readonly mesh: () => MeshConfig;
  readonly log: Logger;
  /** Requested lifetimes are capped at this. */
  readonly maxTtlMs: number;
  readonly defaultTtlMs: number;
  /** Called with the outcome of each request, for metrics. */
  readonly onResult?: (outcome: 'issued' | 'unauthenticated' | 'denied' | 'invalid') => void;
}

type Refusal = { code: status; details: string; outcome: 'unauthenticated' | 'denied' | 'invalid' };

/** The token of an `authorization: Bearer <token>` header, if there is one. */
export function bearerToken(md: Metadata): string | undefined {
  const auth = md.get('authorization')[0];
  return typeof auth === 'string' ? /^Bearer\s+(.+)$/i.exec(auth)?.[1] : undefined;
}

export function caServiceHandlers(opts: CaServiceOptions): UntypedServiceImplementation {
  return {
    CreateCertificate: (
      call: ServerUnaryCall<CertificateRequest, CertificateResponse>,
      callback: sendUnaryData<CertificateResponse>,
    ) => {
      issue(opts, call).then(
        (r) => {
          if ('code' in r) {
            opts.log.warn({ peer: call.getPeer(), error: r.details }, 'certificate refused');
            opts.onResult?.(r.outcome);
            callback({ code: r.code, details: r.details });
          } else {
            opts.onResult?.('issued');
            callback(null, r);
          }
        },
        (err: unknown) => {
          // The reason stays in our log; an unauthenticated caller learns nothing from it.
          opts.log.error({ peer: call.getPeer(), error: describeError(err) }, 'certificate request failed');
          opts.onResult?.('invalid');
          callback({ code: status.INTERNAL, details: 'internal error; see the controller log' });
        },
      );
    },
  };
}

async function issue(
  opts: CaServiceOptions,
  call: ServerUnaryCall<CertificateRequest, CertificateResponse>,
): Promise<CertificateResponse | Refusal> {
  const token = bearerToken(call.metadata);
  if (!token)
    return {
      code: status.UNAUTHENTICATED,
      details: 'missing "authorization: Bearer <token>"',
      outcome: 'unauthenticated',
    };
  const caller = await opts.tokens.callerOf(token);
  if (!caller)
    return {
      code: status.UNAUTHENTICATED,
      details: 'the bearer token is not valid',
      outcome: 'unauthenticated',
    };
  const wanted = call.request.metadata?.ImpersonatedIdentity;
  let identity;
  if (caller.kind === 'workload') {
    // A workload signs for itself: the CSR's SAN must be its own service account's identity.
    identity = {
      trustDomain: opts.ca.trustDomain,
      namespace: caller.namespace,
      serviceAccount: caller.serviceAccount,
    };
    if (typeof wanted === 'string' && wanted && wanted !== formatSpiffe(identity)) {
      return {
        code: status.PERMISSION_DENIED,
        details: `${describeCaller(caller)} may not impersonate ${wanted}`,
        outcome: 'denied',
      };
    }
  } else {
    if (typeof wanted !== 'string' || !wanted) {
      return {
        code: status.PERMISSION_DENIED,
        details: `node ${caller.node}: name the pod identity in metadata ImpersonatedIdentity`,
        outcome: 'denied',
      };
    }
    const parsed = parseSpiffe(wanted);
    if (!parsed.ok) return { code: status.INVALID_ARGUMENT, details: parsed.error, outcome: 'invalid' };
    const id = formatSpiffe(parsed.identity);
    const onNode = opts.mesh().workloads.some((w) => w.node === caller.node && workloadSpiffe(w) === id);
    if (!onNode) {
      return {
        code: status.PERMISSION_DENIED,
        details: `no pod with identity ${id} is scheduled on node ${caller.node}`,
        outcome: 'denied',
      };
    }
    identity = parsed.identity;
  }
  const requestedMs = (call.request.validity_duration ?? 0) * 1000;
  const ttlMs = Math.min(requestedMs > 0 ? requestedMs : opts.defaultTtlMs, opts.maxTtlMs);
  const r = await opts.ca.sign({ csrPem: call.request.csr, ttlMs, expected: identity });
  if (!r.ok) return { code: status.INVALID_ARGUMENT, details: r.reason, outcome: 'invalid' };
  opts.log.info(
    { caller: describeCaller(caller), identity: formatSpiffe(identity), ttlMs },
    'certificate issued',
  );
  return { cert_chain: r.certChain };
}
