/**
 * istiod's second check before it serves a gateway a Secret (pilot/pkg/credentials/kube/secrets.go
 * `Authorize`): a SubjectAccessReview asking whether the gateway's service account may `list`
 * `secrets` in its own namespace — so a workload that merely shares a namespace with a gateway
 * cannot read its certificates unless RBAC lets it (daemonset/gateways/sds-rbac.yaml grants Istio's
 * two gateways). Verdicts are cached as istiod caches them: an allowed one 5 minutes, a refusal 1.
 */
import { AuthorizationV1Api } from '@kubernetes/client-node';
import { describeError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { loadKubeConfig, type KubeConfigSource } from './source.ts';

const ALLOWED_CACHE_MS = 5 * 60_000;
const REFUSED_CACHE_MS = 60_000;
/** A review that takes longer than this counts as a refusal (not cached). */
const REVIEW_TIMEOUT_MS = 5_000;

/** Whether a service account may read the Secrets of its namespace; the reason when it may not. */
export interface SecretAccess {
  mayReadSecrets(namespace: string, serviceAccount: string): Promise<string | undefined>;
}

export class SubjectAccessReviewAuthority implements SecretAccess {
  private readonly api: AuthorizationV1Api;
  private readonly log: Logger;
  private readonly cache = new Map<string, { refusal: string | undefined; untilMs: number }>();

  constructor(source: KubeConfigSource, log: Logger) {
    this.api = loadKubeConfig(source).makeApiClient(AuthorizationV1Api);
    this.log = log;
  }

  async mayReadSecrets(namespace: string, serviceAccount: string): Promise<string | undefined> {
    const user = `system:serviceaccount:${namespace}:${serviceAccount}`;
    const hit = this.cache.get(user);
    if (hit && hit.untilMs > Date.now()) return hit.refusal;
    let timer: NodeJS.Timeout | undefined;
    try {
      const review = this.api.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: { user, resourceAttributes: { namespace, verb: 'list', resource: 'secrets' } },
        },
      });
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${REVIEW_TIMEOUT_MS} ms`)),
          REVIEW_TIMEOUT_MS,
        );
      });
      const r = await Promise.race([review, timeout]);
      const refusal = r.status?.allowed
        ? undefined
        : `${namespace}/${serviceAccount} may not list secrets in ${namespace}${r.status?.reason ? `: ${r.status.reason}` : ''}`;
      this.cache.set(user, {
        refusal,
        untilMs: Date.now() + (refusal ? REFUSED_CACHE_MS : ALLOWED_CACHE_MS),
      });
      return refusal;
    } catch (err) {
      this.log.warn(
        { error: describeError(err) },
        'SubjectAccessReview failed; is the controller allowed to create subjectaccessreviews?',
      );
      return `cannot check whether ${namespace}/${serviceAccount} may read secrets: ${describeError(err)}`;
    } finally {
      clearTimeout(timer);
    }
  }
}
