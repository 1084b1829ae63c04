/**
 * A CertificateProvider that asks the CA service (`CreateCertificate`) for each identity, as a node
 * agent does: a fresh P-256 key and CSR, the agent's bearer token, and the pod identity it wants
 * (`ImpersonatedIdentity`). The returned leaf must carry exactly that identity.
 */
import {
  status,
  makeGenericClientConstructor,
  Metadata,
  type ChannelCredentials,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { AmbitError, ErrorCode } from '../errors.ts';
import {
  caServiceDefinition,
  type CertificateRequest,
  type CertificateResponse,
} from '../proto/ca-service.ts';
import { workloadCertificateFromChain, type WorkloadCertificate } from './certificate.ts';
import { createCsr } from './csr.ts';
import type { CertificateProvider } from './secret-manager.ts';
import { formatSpiffe, type Identity } from './spiffe.ts';

export interface GrpcCaOptions {
  /** `host:port` of the CA service. */
  readonly target: string;
  readonly credentials: ChannelCredentials;
  /** Sent as `authorization: Bearer <token>`; read on every call so a rotated token is used. */
  readonly token: () => string;
  /** Sent as `clusterid`. */
  readonly clusterId: string;
  readonly ttlMs: number;
  /** Per-call deadline. */
  readonly timeoutMs: number;
  /** gRPC channel options, e.g. the TLS name override for a server dialled by address. */
  readonly channelOptions?: Readonly<Record<string, string | number>>;
}

type CaClient = Client & {
  CreateCertificate(
    req: CertificateRequest,
    md: Metadata,
    opts: { deadline: number },
    cb: (err: ServiceError | null, res?: CertificateResponse) => void,
  ): void;
};

export class GrpcCaProvider implements CertificateProvider {
  private readonly opts: GrpcCaOptions;
  private readonly client: CaClient;

  constructor(opts: GrpcCaOptions) {
    this.opts = opts;
    const Ctor = makeGenericClientConstructor(caServiceDefinition(), 'IstioCertificateService');
    this.client = new Ctor(opts.target, opts.credentials, { ...opts.channelOptions }) as unknown as CaClient;
  }

  async fetch(identity: Identity): Promise<WorkloadCertificate> {
    const { csrPem, keyPem } = await createCsr(identity);
    const md = new Metadata();
    md.set('authorization', `Bearer ${this.opts.token()}`);
    md.set('clusterid', this.opts.clusterId);
    const res = await new Promise<CertificateResponse>((resolve, reject) => {
      this.client.CreateCertificate(
        {
          csr: csrPem,
          validity_duration: Math.round(this.opts.ttlMs / 1000),
          metadata: { ImpersonatedIdentity: formatSpiffe(identity) },
        },
        md,
        { deadline: Date.now() + this.opts.timeoutMs },
        (err, r) => (err ? reject(err) : resolve(r!)),
      );
    }).catch((err: ServiceError) => {
      throw new AmbitError(
        ErrorCode.CertificateUnavailable,
        `CA refused ${formatSpiffe(identity)}: ${err.details || err.message}`,
        {
          cause: err,
          hint:
            err.code === status.UNAUTHENTICATED || err.code === status.PERMISSION_DENIED
              ? "is this agent's token valid, and is the pod on this node?"
              : undefined,
        },
      );
    });
    return workloadCertificateFromChain(identity, keyPem, res.cert_chain);
  }

  close(): void {
    this.client.close();
  }
}
