/**
 * `npm run bench:policy`: what L4 authorization costs the node agent per inbound connection at 10,
 * 1,000 and 10,000 AuthorizationPolicies in the mesh, beside a mesh with none (measured in the same
 * run). Each evaluation is what inbound.ts does: `state.policiesFor(destination)` (the candidate
 * policies: the destination's namespace, global ones, its own selector policies) then `evaluateL4`.
 *
 * The mix per 20 policies, one namespace each (so the mesh grows in namespaces, as real ones do):
 * 2 namespace-wide ALLOWs (namespaces, principals), 1 namespace-wide DENY (source CIDRs and a port),
 * and 17 selector ALLOWs for other workloads of the namespace (principals, ports); plus one global
 * DENY in the root namespace, as a STRICT PeerAuthentication makes. The destination workload lists
 * one selector policy of its own. Three connections take turns: allowed by its selector policy,
 * allowed by a namespace-wide policy, denied (no ALLOW matches).
 *
 * The last column evaluates the same candidates found by scanning every policy instead of the index:
 * what the cost would be without MeshState's per-namespace index.
 */
import { evaluateL4, type L4Connection } from '../src/core/policy/l4.ts';
import { MeshState } from '../src/core/state/mesh-state.ts';
import {
  EMPTY_MATCH,
  policyKey,
  type Authorization,
  type MeshConfig,
  type Workload,
} from '../src/core/xds/model.ts';
import { median } from './lib/stats.ts';

const SIZES = [0, 10, 1_000, 10_000] as const;
const ROUNDS = 7;
/** Evaluations per round; enough for ~20-100 ms a round on these machines. */
const ITERATIONS = 200_000;
const PER_NAMESPACE = 20;
const ROOT_NAMESPACE = 'istio-system';

const exact = (value: string) => ({ kind: 'exact' as const, value });
const principal = (ns: string, sa: string) => exact(`cluster.local/ns/${ns}/sa/${sa}`);

function policiesFor(total: number): Authorization[] {
  const out: Authorization[] = [];
  const add = (p: Omit<Authorization, 'dryRun'>) => out.push({ ...p, dryRun: false });
  if (total === 0) return out;
  add({
    name: 'istio_converted_static_strict',
    namespace: ROOT_NAMESPACE,
    scope: 'Global',
    action: 'Deny',
    rules: [[[{ ...EMPTY_MATCH, notPrincipals: [{ kind: 'presence' }] }]]],
  });
  for (let n = 0; out.length < total; n++) {
    const ns = `ns-${n}`;
    const kinds = [
      () =>
        add({
          name: 'allow-same-namespace',
          namespace: ns,
          scope: 'Namespace',
          action: 'Allow',
          rules: [[[{ ...EMPTY_MATCH, namespaces: [exact(ns)] }]]],
        }),
      () =>
        add({
          name: 'allow-monitoring',
          namespace: ns,
          scope: 'Namespace',
          action: 'Allow',
          rules: [
            [
              [{ ...EMPTY_MATCH, principals: [principal('monitoring', 'prometheus')] }],
              [{ ...EMPTY_MATCH, destinationPorts: [15020, 9090] }],
            ],
          ],
        }),
      () =>
        add({
          name: 'deny-legacy-range',
          namespace: ns,
          scope: 'Namespace',
          action: 'Deny',
          rules: [
            [
              [{ ...EMPTY_MATCH, sourceIps: [{ address: '192.168.0.0', prefixLength: 16 }] }],
              [{ ...EMPTY_MATCH, destinationPorts: [22] }],
            ],
          ],
        }),
    ];
    for (let i = 0; i < PER_NAMESPACE && out.length < total; i++) {
      if (i < kinds.length) {
        kinds[i]!();
        continue;
      }
      add({
        name: `app-${i}-viewer`,
        namespace: ns,
        scope: 'WorkloadSelector',
        action: 'Allow',
        rules: [
          [
            [
              {
                ...EMPTY_MATCH,
                principals: [principal(ns, `frontend-${i}`), principal('ingress', 'gateway')],
              },
            ],
            [{ ...EMPTY_MATCH, destinationPorts: [8080, 9080] }],
          ],
        ],
      });
    }
  }
  return out;
}

function destination(policies: readonly Authorization[]): Workload {
  const own = policies.find((p) => p.namespace === 'ns-0' && p.scope === 'WorkloadSelector');
  return {
    uid: 'Kubernetes//Pod/ns-0/app-3-0',
    name: 'app-3-0',
    namespace: 'ns-0',
    addresses: ['10.1.0.5'],
    hostname: '',
    network: '',
    tunnelProtocol: 'HBONE',
    trustDomain: 'cluster.local',
    serviceAccount: 'app-3',
    waypoint: undefined,
    node: 'node-1',
    canonicalName: 'app-3',
    canonicalRevision: 'v1',
    workloadType: 'pod',
    workloadName: 'app-3',
    services: new Map(),
    authorizationPolicies: own ? [policyKey(own)] : [],
    healthy: true,
    clusterId: 'Kubernetes',
    capacity: 1,
  };
}

const id = (namespace: string, serviceAccount: string) => ({
  trustDomain: 'cluster.local',
  namespace,
  serviceAccount,
});
const CONNECTIONS: readonly L4Connection[] = [
  { srcIp: '10.2.0.7', dstIp: '10.1.0.5', dstPort: 9080, srcIdentity: id('ns-0', 'frontend-3') },
  { srcIp: '10.1.0.9', dstIp: '10.1.0.5', dstPort: 9080, srcIdentity: id('ns-0', 'batch') },
  { srcIp: '10.3.0.2', dstIp: '10.1.0.5', dstPort: 9080, srcIdentity: id('shop', 'cart') },
];

/**
 * Nanoseconds per evaluation, median over rounds (the first warms up the JIT), and the share of
 * connections allowed (which also keeps the JIT from dropping the work).
 */
function measure(
  evaluate: (c: L4Connection) => boolean,
  iterations: number,
): { ns: number; allowed: number } {
  let allowed = 0;
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS + 1; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) if (evaluate(CONNECTIONS[i % CONNECTIONS.length]!)) allowed++;
    const ns = Number(process.hrtime.bigint() - start) / iterations;
    if (r > 0) rounds.push(ns);
  }
  return { ns: median(rounds), allowed: allowed / (ROUNDS + 1) / iterations };
}

/** The candidates as policiesFor defines them, found by looking at every policy. */
function scanAll(policies: readonly Authorization[], w: Workload): Authorization[] {
  const own = new Set(w.authorizationPolicies);
  return policies.filter(
    (p) =>
      (p.scope === 'Namespace' && p.namespace === w.namespace) ||
      p.scope === 'Global' ||
      (p.scope === 'WorkloadSelector' && own.has(policyKey(p))),
  );
}

interface Row {
  policies: number;
  candidates: number;
  ns: number;
  scanNs: number;
  allowedShare: number;
}

const rows: Row[] = [];
for (const size of SIZES) {
  const policies = policiesFor(size);
  const w = destination(policies);
  const config: MeshConfig = { workloads: [w], services: [], policies };
  const state = new MeshState(config);
  const indexed = measure((c) => evaluateL4(state.policiesFor(w), c).allowed, ITERATIONS);
  // A scan costs per policy: fewer iterations for big meshes keep each round near the same time.
  const scanned = measure(
    (c) => evaluateL4(scanAll(policies, w), c).allowed,
    Math.max(300, Math.floor(ITERATIONS / Math.max(1, size / 10))),
  );
  rows.push({
    policies: size,
    candidates: state.policiesFor(w).length,
    ns: indexed.ns,
    scanNs: scanned.ns,
    allowedShare: indexed.allowed,
  });
}

const baseline = rows[0]!.ns;
const fmt = (n: number) => Math.round(n).toLocaleString('en-US').replace(/,/g, ' ');
const header = [
  'policies in mesh',
  'candidates',
  'ns/evaluation',
  'added vs 0 policies (ns)',
  'without the index (ns)',
];
const table = [
  header,
  header.map(() => '---'),
  ...rows.map((r) => [
    fmt(r.policies),
    String(r.candidates),
    fmt(r.ns),
    r.policies === 0 ? '—' : fmt(r.ns - baseline),
    fmt(r.scanNs),
  ]),
];
const widths = header.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
console.log(
  `L4 policy evaluation per connection (policiesFor + evaluateL4), median of ${ROUNDS} × ${fmt(ITERATIONS)}; ` +
    `connections allowed: ${Math.round(rows[1]!.allowedShare * 100)} %`,
);
for (const row of table) {
  const line = row.map((c, i) => (c === '---' ? '-'.repeat(widths[i]!) : c.padEnd(widths[i]!))).join(' | ');
  console.log(`| ${line} |`);
}
