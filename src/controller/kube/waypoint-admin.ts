/**
 * The Kubernetes calls behind `ambit waypoint apply|list|status|delete` in a cluster: read, create,
 * replace and delete Gateways, and label a Namespace. A thin edge over the API server's REST paths
 * through `@kubernetes/client-node`'s HTTP stack (auth, TLS and token refresh from the kubeconfig);
 * the objects stay plain JSON, built and read by the CLI.
 */
import {
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  RequestContext,
  type KubeConfig,
} from '@kubernetes/client-node';
import { AmbitError, describeError, ErrorCode } from '../../core/errors.ts';
import { loadKubeConfig, type KubeConfigSource } from './source.ts';

export type KubeJson = Record<string, unknown>;

const GATEWAY_API = '/apis/gateway.networking.k8s.io/v1';
const REQUEST_TIMEOUT_MS = 30_000;

/** Gateways and Namespaces through one kubeconfig. */
export class WaypointAdmin {
  private readonly kc: KubeConfig;
  private readonly server: string;
  private readonly http = new IsomorphicFetchHttpLibrary();

  private constructor(kc: KubeConfig) {
    this.kc = kc;
    this.server = kc.getCurrentCluster()?.server ?? '';
  }

  /** Loads the kubeconfig (its current context); throws an AmbitError saying what to check. */
  static open(source: KubeConfigSource): WaypointAdmin {
    return new WaypointAdmin(loadKubeConfig(source));
  }

  /** One Gateway, or undefined when it does not exist. */
  getGateway(namespace: string, name: string): Promise<KubeJson | undefined> {
    return this.getOptional(gatewayPath(namespace, name), 'Gateway');
  }

  /** One GatewayClass (cluster-scoped), or undefined when it does not exist. */
  getGatewayClass(name: string): Promise<KubeJson | undefined> {
    return this.getOptional(`${GATEWAY_API}/gatewayclasses/${encodeURIComponent(name)}`, 'GatewayClass');
  }

  /** The Gateways of one namespace, or of all when `namespace` is undefined. */
  async listGateways(namespace: string | undefined): Promise<KubeJson[]> {
    const path = namespace === undefined ? `${GATEWAY_API}/gateways` : gatewayPath(namespace);
    const list = await this.request(HttpMethod.GET, path, 'Gateway');
    return Array.isArray(list.items) ? (list.items as KubeJson[]) : [];
  }

  createGateway(namespace: string, gateway: KubeJson): Promise<KubeJson> {
    return this.request(HttpMethod.POST, gatewayPath(namespace), 'Gateway', gateway);
  }

  /** Replaces a Gateway; `gateway.metadata.resourceVersion` guards against a concurrent change. */
  replaceGateway(namespace: string, name: string, gateway: KubeJson): Promise<KubeJson> {
    return this.request(HttpMethod.PUT, gatewayPath(namespace, name), 'Gateway', gateway);
  }

  /** Deletes a Gateway; false when there was none. */
  async deleteGateway(namespace: string, name: string): Promise<boolean> {
    try {
      await this.request(HttpMethod.DELETE, gatewayPath(namespace, name), 'Gateway');
      return true;
    } catch (err) {
      if (err instanceof NotFound) return false;
      throw err;
    }
  }

  getNamespace(name: string): Promise<KubeJson | undefined> {
    return this.getOptional(`/api/v1/namespaces/${encodeURIComponent(name)}`, 'Namespace');
  }

  /** Sets (or, with `null`, removes) labels of a Namespace with a JSON merge patch. */
  labelNamespace(name: string, labels: Readonly<Record<string, string | null>>): Promise<KubeJson> {
    return this.request(
      HttpMethod.PATCH,
      `/api/v1/namespaces/${encodeURIComponent(name)}`,
      'Namespace',
      { metadata: { labels } },
      'application/merge-patch+json',
    );
  }

  private async getOptional(path: string, kind: string): Promise<KubeJson | undefined> {
    try {
      return await this.request(HttpMethod.GET, path, kind);
    } catch (err) {
      if (err instanceof NotFound) return undefined;
      throw err;
    }
  }

  private async request(
    method: HttpMethod,
    path: string,
    kind: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<KubeJson> {
    const ctx = new RequestContext(`${this.server}${path}`, method);
    ctx.setHeaderParam('Accept', 'application/json');
    if (body !== undefined) {
      ctx.setHeaderParam('Content-Type', contentType);
      ctx.setBody(JSON.stringify(body));
    }
    ctx.setSignal(AbortSignal.timeout(REQUEST_TIMEOUT_MS));
    await this.kc.applySecurityAuthentication(ctx);
    let status: number;
    let text: string;
    try {
      const rsp = await this.http.send(ctx).toPromise();
      status = rsp.httpStatusCode;
      text = await rsp.body.text();
    } catch (err) {
      throw new AmbitError(ErrorCode.ConfigRead, `cannot reach the API server ${this.server}`, {
        hint: `${describeError(err)}; is the kubeconfig's current context the cluster you mean (--kubeconfig)?`,
        cause: err,
      });
    }
    const parsed = parseJson(text);
    if (status >= 200 && status < 300) return parsed ?? {};
    const message = typeof parsed?.message === 'string' ? parsed.message : text.slice(0, 200);
    const what = `${method} ${path}: HTTP ${status}: ${message}`;
    if (status === 404) throw new NotFound(what, kind);
    const hint =
      status === 401 || status === 403
        ? `may your user ${method === HttpMethod.GET ? 'read' : 'write'} ${kind} objects (RBAC)? try kubectl auth can-i`
        : status === 409
          ? 'someone changed it meanwhile; run the command again'
          : undefined;
    throw new AmbitError(ErrorCode.ConfigRead, what, hint ? { hint } : {});
  }
}

/** The object (or, for a list or a create, the kind's collection) does not exist. */
export class NotFound extends AmbitError {
  readonly kind: string;

  constructor(message: string, kind: string) {
    // What kube-apiserver says for a resource type it does not serve, rather than a missing object.
    const unserved = message.includes('could not find the requested resource');
    super(
      ErrorCode.ConfigRead,
      message,
      unserved && kind === 'Gateway'
        ? { hint: 'are the Gateway API CRDs installed (kubectl get crd gateways.gateway.networking.k8s.io)?' }
        : {},
    );
    this.kind = kind;
  }
}

function gatewayPath(namespace: string, name?: string): string {
  const base = `${GATEWAY_API}/namespaces/${encodeURIComponent(namespace)}/gateways`;
  return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
}

function parseJson(text: string): KubeJson | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as KubeJson) : undefined;
  } catch {
    return undefined;
  }
}
