/**
 * Plain types the Kubernetes objects (kube-types.ts), the L7 objects (l7/types.ts) and the
 * translation's problems (common.ts) share. A leaf: the snapshot holds decoded VirtualServices and
 * DestinationRules, so l7/types.ts may import nothing that imports the snapshot.
 */

/** Label or annotation map. Look keys up with `Object.hasOwn`: keys such as `constructor` are legal. */
export type StringMap = Readonly<Record<string, string>>;

export type ProblemKind =
  | 'Pod'
  | 'Service'
  | 'EndpointSlice'
  | 'ServiceEntry'
  | 'AuthorizationPolicy'
  | 'PeerAuthentication'
  | 'Gateway'
  | 'GatewayClass'
  | 'VirtualService'
  | 'DestinationRule';

export interface TranslateProblem {
  /** `error`: the object (or one of its parts, e.g. a port) was skipped; `warning`: it was applied with a change the user must know about. */
  readonly severity: 'error' | 'warning';
  readonly kind: ProblemKind;
  readonly namespace: string;
  readonly name: string;
  /** Field path within the object, e.g. `spec.rules[0].from[0].source.ipBlocks[1]`. */
  readonly path: string;
  readonly message: string;
}
