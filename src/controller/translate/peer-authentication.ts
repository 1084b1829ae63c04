/**
 * PeerAuthentication → L4 DENY Authorizations that ztunnel enforces, as istiod's ambient index does
 * (pilot/pkg/serviceregistry/kube/controller/ambient/authorization.go: convertPeerAuthentication,
 * convertedSelectorPeerAuthentications). Pure.
 *
 * ztunnel has no notion of mTLS modes: "STRICT" is a DENY policy that matches a connection without
 * a peer identity (`not_principals: [presence]`: a plaintext connection has no principal, so no
 * presence match, so the negative list passes). istiod sends:
 * - `<root>/istio_converted_static_strict`, whenever any PeerAuthentication exists: deny every
 *   connection without an identity. A workload whose effective mode is STRICT on every port lists it.
 * - `<ns>/converted_peer_authentication_<name>` for a workload-selector policy whose port-level modes
 *   differ from its effective mode: when STRICT, deny no-identity connections except on the
 *   PERMISSIVE ports; otherwise deny no-identity connections on the STRICT ports only. A workload
 *   it selects lists this one instead of the static policy.
 *
 * The effective mode of a workload: the mesh policy (root namespace, no selector), overridden by its
 * namespace's policy unless UNSET, overridden by the oldest policy selecting it unless UNSET; then
 * per port. Where several policies compete at one level the oldest wins (then the name).
 *
 * Where istiod's code departs from that (a port-level STRICT under a workload PERMISSIVE policy is
 * dropped when the mesh policy is STRICT; an UNSET namespace policy hides a STRICT mesh policy from
 * port-level PERMISSIVE), this follows the documented inheritance. istiod's merged policy can also
 * repeat its no-identity clause; it is written once here, which matches the same connections.
 */
import {
  EMPTY_MATCH,
  PolicyAction,
  PolicyScope,
  type Authorization,
  type Clause,
  type Rule,
} from '../../core/xds/model.ts';
import { compare, reporter, validPort, type TranslateOptions, type TranslateProblem } from './common.ts';
import { selects, type PeerAuthentication, type StringMap } from './kube-types.ts';

export const STATIC_STRICT_POLICY = 'istio_converted_static_strict';
export const CONVERTED_PEER_AUTHENTICATION_PREFIX = 'converted_peer_authentication_';

const MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;
type Mode = (typeof MODES)[number];

interface ValidPolicy {
  readonly pa: PeerAuthentication;
  readonly mode: Mode;
  /** Ascending by port. */
  readonly ports: readonly { readonly port: number; readonly mode: Mode }[];
}

export interface PeerAuthenticationResult {
  /** The static STRICT policy (when any PeerAuthentication is valid) and the converted ones. */
  readonly policies: readonly Authorization[];
  /** Keys (`namespace/name`) a workload with these labels in this namespace must list. */
  keysFor(namespace: string, labels: StringMap): string[];
}

/** The no-identity match: nothing in `not_principals` presence, i.e. no peer identity at all. */
const NO_IDENTITY = { ...EMPTY_MATCH, notPrincipals: [{ kind: 'presence' as const }] };

export function translatePeerAuthentications(
  list: readonly PeerAuthentication[],
  options: TranslateOptions,
  problems: TranslateProblem[],
): PeerAuthenticationResult {
  const root = options.rootNamespace;
  const valid: ValidPolicy[] = [];
  for (const pa of list) {
    const v = validate(pa, root, problems);
    if (v !== undefined) valid.push(v);
  }
  // Oldest first, so the first match at each level is the one istiod picks.
  valid.sort(
    (a, b) =>
      compare(a.pa.creationTimestamp, b.pa.creationTimestamp) ||
      compare(a.pa.namespace, b.pa.namespace) ||
      compare(a.pa.name, b.pa.name),
  );
  const wide = (v: ValidPolicy) => v.pa.selector === undefined || Object.keys(v.pa.selector).length === 0;
  const mesh = valid.find((v) => v.pa.namespace === root && wide(v));
  const namespaceWide = new Map<string, ValidPolicy>();
  const selecting = new Map<string, ValidPolicy[]>();
  for (const v of valid) {
    if (v.pa.namespace === root) continue; // a root selector policy was warned about and is ignored
    if (wide(v)) {
      if (!namespaceWide.has(v.pa.namespace)) namespaceWide.set(v.pa.namespace, v);
    } else {
      const l = selecting.get(v.pa.namespace);
      if (l) l.push(v);
      else selecting.set(v.pa.namespace, [v]);
    }
  }

  /** STRICT from the mesh and namespace levels (UNSET inherits; anything else is not STRICT). */
  const namespaceStrict = (namespace: string): boolean => {
    let strict = mesh?.mode === 'STRICT';
    const ns = namespace === root ? undefined : namespaceWide.get(namespace);
    if (ns && ns.mode !== 'UNSET') strict = ns.mode === 'STRICT';
    return strict;
  };
  /** The workload policy's default and the ports whose mode differs from it. */
  const effective = (v: ValidPolicy): { strict: boolean; differing: { port: number; strict: boolean }[] } => {
    const strict = v.mode === 'UNSET' ? namespaceStrict(v.pa.namespace) : v.mode === 'STRICT';
    const differing = v.ports
      .map((p) => ({ port: p.port, strict: p.mode === 'UNSET' ? strict : p.mode === 'STRICT' }))
      .filter((p) => p.strict !== strict);
    return { strict, differing };
  };

  const policies: Authorization[] = [];
  // istiod sends it as soon as any PeerAuthentication exists (an invalid one is skipped entirely).
  if (valid.length > 0)
    policies.push({
      name: STATIC_STRICT_POLICY,
      namespace: root,
      scope: PolicyScope.WorkloadSelector,
      action: PolicyAction.Deny,
      rules: [[[NO_IDENTITY]]],
      dryRun: false,
    });
  for (const group of selecting.values()) {
    for (const v of group) {
      const { strict, differing } = effective(v);
      if (differing.length === 0) continue;
      let rules: Rule[];
      if (strict) {
        // Deny without identity unless the port is one of the PERMISSIVE ones (clauses are ANDed).
        const clauses: Clause[] = [[NO_IDENTITY]];
        for (const p of differing) clauses.push([{ ...EMPTY_MATCH, notDestinationPorts: [p.port] }]);
        rules = [clauses];
      } else {
        // One rule per STRICT port (rules are ORed).
        rules = differing.map((p) => [[{ ...NO_IDENTITY, destinationPorts: [p.port] }]]);
      }
      policies.push({
        name: `${CONVERTED_PEER_AUTHENTICATION_PREFIX}${v.pa.name}`,
        namespace: v.pa.namespace,
        scope: PolicyScope.WorkloadSelector,
        action: PolicyAction.Deny,
        rules,
        dryRun: false,
      });
    }
  }

  return {
    policies,
    keysFor(namespace, labels) {
      const staticKey = `${root}/${STATIC_STRICT_POLICY}`;
      const workload =
        namespace === root
          ? undefined
          : selecting.get(namespace)?.find((v) => selects(v.pa.selector ?? {}, labels));
      if (workload === undefined) return namespaceStrict(namespace) ? [staticKey] : [];
      const { strict, differing } = effective(workload);
      if (differing.length > 0)
        return [`${namespace}/${CONVERTED_PEER_AUTHENTICATION_PREFIX}${workload.pa.name}`];
      return strict ? [staticKey] : [];
    },
  };
}

/** Istio's validation of a PeerAuthentication, plus what ambient ignores; undefined when skipped. */
function validate(
  pa: PeerAuthentication,
  root: string,
  problems: TranslateProblem[],
): ValidPolicy | undefined {
  const errors: TranslateProblem[] = [];
  const warnings: TranslateProblem[] = [];
  const report = reporter(errors, 'PeerAuthentication', pa);
  const warn = reporter(warnings, 'PeerAuthentication', pa);
  const mode = (v: string, path: string): Mode => {
    const m = v === '' ? 'UNSET' : v;
    if ((MODES as readonly string[]).includes(m)) return m as Mode;
    report('error', path, `"${v}" must be UNSET, DISABLE, PERMISSIVE or STRICT`);
    return 'UNSET';
  };
  const top = mode(pa.mode, 'spec.mtls.mode');
  const hasSelector = pa.selector !== undefined && Object.keys(pa.selector).length > 0;
  if (pa.portLevelMtls.length > 0 && !hasSelector)
    report(
      'error',
      'spec.portLevelMtls',
      'a mesh- or namespace-wide policy (no selector) cannot have port-level mTLS; add spec.selector.matchLabels',
    );
  const seen = new Set<number>();
  const ports = pa.portLevelMtls.map((p) => {
    const path = `spec.portLevelMtls.${p.port}`;
    if (!validPort(p.port)) report('error', path, `${p.port} is not a port number (1-65535)`);
    else if (seen.has(p.port)) report('error', path, `port ${p.port} is listed twice`);
    seen.add(p.port);
    return { port: p.port, mode: mode(p.mode, `${path}.mode`) };
  });
  if (errors.length > 0) {
    problems.push(...errors);
    return undefined;
  }
  const disabled = [
    ...(top === 'DISABLE' ? ['spec.mtls.mode'] : []),
    ...ports.filter((p) => p.mode === 'DISABLE').map((p) => `spec.portLevelMtls.${p.port}.mode`),
  ];
  for (const path of disabled)
    warn(
      'warning',
      path,
      'DISABLE is not supported in ambient: ztunnel keeps mTLS between mesh workloads; as in istiod it only lifts a broader STRICT here, like PERMISSIVE',
    );
  if (pa.namespace === root && hasSelector)
    warn(
      'warning',
      'spec.selector',
      `a policy with a workload selector in the root namespace (${root}) is ignored in ambient; put it in the workload's namespace`,
    );
  problems.push(...warnings);
  return { pa, mode: top, ports: [...ports].sort((a, b) => a.port - b.port) };
}
