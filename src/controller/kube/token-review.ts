/**
 * Bearer tokens checked by the API server (TokenReview), as istiod does: the token must be valid.
 * A node agent's service account token must be bound to a pod (or node) so the controller knows
 * which node the agent runs on; the agent may then obtain only identities of pods on that node. Any
 * other service account's token makes its holder that workload, which may obtain only its own
 * identity (a waypoint).
 */
import { AuthenticationV1Api } from '@kubernetes/client-node';
import { describeError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { Caller, TokenAuthority } from '../ca/ca-service.ts';
import { loadKubeConfig, type KubeConfigSource } from './source.ts';

/** Extra fields the API server puts on a bound service account token's user (Kubernetes ≥ 1.30). */
const NODE_NAME = 'authentication.kubernetes.io/node-name';
const POD_NAME = 'authentication.kubernetes.io/pod-name';
/** How long a verdict is reused: a CSR burst at start-up becomes one review per agent. */
const CACHE_MS = 60_000;
/** Most tokens remembered; the oldest is dropped first. */
const MAX_CACHED = 10_000;
/** A TokenReview that takes longer than this counts as a refusal. */
const REVIEW_TIMEOUT_MS = 5_000;

export interface TokenReviewOptions {
  /** `namespace/name` of the service accounts node agents run as. */
  readonly agentServiceAccounts: readonly string[];
  /** Audiences the token must carry; empty accepts the API server's default. */
  readonly audiences: readonly string[];
  /** The node a pod runs on, for tokens bound to a pod but not to a node. */
  readonly nodeOfPod: (namespace: string, name: string) => string | undefined;
  readonly log: Logger;
}

export class TokenReviewAuthority implements TokenAuthority {
  private readonly api: AuthenticationV1Api;
  private readonly opts: TokenReviewOptions;
  private readonly cache = new Map<string, { caller: Caller; untilMs: number }>();
  private readonly inflight = new Map<string, Promise<Caller | undefined>>();

  constructor(source: KubeConfigSource, opts: TokenReviewOptions) {
    this.api = loadKubeConfig(source).makeApiClient(AuthenticationV1Api);
    this.opts = opts;
  }

  async callerOf(token: string): Promise<Caller | undefined> {
    const hit = this.cache.get(token);
    if (hit && hit.untilMs > Date.now()) return hit.caller;
    // One review per token at a time: a burst of CSRs from an agent starting up shares it.
    let inflight = this.inflight.get(token);
    if (!inflight) {
      inflight = this.review(token).finally(() => this.inflight.delete(token));
      this.inflight.set(token, inflight);
    }
    const caller = await inflight;
    // Only successes are cached: a refusal (or an API server hiccup) is asked again next time.
    if (caller !== undefined) {
      if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(token, { caller, untilMs: Date.now() + CACHE_MS });
    }
    return caller;
  }

  private async review(token: string): Promise<Caller | undefined> {
    let status;
    try {
      const review = this.api.createTokenReview({
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: { token, audiences: this.opts.audiences.length ? [...this.opts.audiences] : undefined },
        },
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${REVIEW_TIMEOUT_MS} ms`)),
          REVIEW_TIMEOUT_MS,
        );
      });
      const r = await Promise.race([review, timeout]).finally(() => clearTimeout(timer));
      status = r.status;
    } catch (err) {
      this.opts.log.warn(
        { error: describeError(err) },
        'TokenReview failed; is the controller allowed to create tokenreviews?',
      );
      return undefined;
    }
    // A client that asks for audiences must check that one came back (authenticators may ignore them).
    if (
      status?.authenticated &&
      this.opts.audiences.length > 0 &&
      !(status.audiences ?? []).some((a) => this.opts.audiences.includes(a))
    ) {
      this.opts.log.info({ audiences: status.audiences ?? [] }, 'token is not for our audience');
      return undefined;
    }
    if (!status?.authenticated || !status.user?.username) {
      this.opts.log.info({ error: status?.error ?? 'not authenticated' }, 'token refused by the API server');
      return undefined;
    }
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user.username);
    if (!m) {
      this.opts.log.info({ user: status.user.username }, 'token is not a service account token');
      return undefined;
    }
    const [namespace, serviceAccount] = [m[1]!, m[2]!];
    if (!this.opts.agentServiceAccounts.includes(`${namespace}/${serviceAccount}`))
      return { kind: 'workload', namespace, serviceAccount };
    const extra = status.user.extra ?? {};
    const node = extra[NODE_NAME]?.[0];
    if (node) return { kind: 'node', node };
    const pod = extra[POD_NAME]?.[0];
    const fromPod = pod ? this.opts.nodeOfPod(namespace, pod) : undefined;
    if (!fromPod)
      this.opts.log.info({ user: status.user.username, pod }, 'token is bound to no known node or pod');
    return fromPod === undefined ? undefined : { kind: 'node', node: fromPod };
  }
}
