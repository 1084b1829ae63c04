/**
 * The schemas' validators accept fields they do not know (a misspelt `tolerations` or
 * `mountPropagation` would pass them, and the API server would drop it with at most a warning). The
 * same models' TypeScript interfaces know every field: each manifest object is type-checked as an
 * object literal of its kind's interface, and TypeScript's excess-property check names any field the
 * kind does not have, at any depth.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { describeObj, loadAll, ROOT } from './manifests.ts';

/** apiVersion/kind → [module, interface]. */
const TYPES: Readonly<Record<string, readonly [string, string]>> = {
  'v1/Namespace': ['kubernetes-models/v1/Namespace', 'INamespace'],
  'v1/ServiceAccount': ['kubernetes-models/v1/ServiceAccount', 'IServiceAccount'],
  'v1/Service': ['kubernetes-models/v1/Service', 'IService'],
  'v1/ConfigMap': ['kubernetes-models/v1/ConfigMap', 'IConfigMap'],
  'apps/v1/Deployment': ['kubernetes-models/apps/v1/Deployment', 'IDeployment'],
  'apps/v1/DaemonSet': ['kubernetes-models/apps/v1/DaemonSet', 'IDaemonSet'],
  'policy/v1/PodDisruptionBudget': [
    'kubernetes-models/policy/v1/PodDisruptionBudget',
    'IPodDisruptionBudget',
  ],
  'rbac.authorization.k8s.io/v1/ClusterRole': [
    'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole',
    'IClusterRole',
  ],
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': [
    'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding',
    'IClusterRoleBinding',
  ],
  'rbac.authorization.k8s.io/v1/Role': ['kubernetes-models/rbac.authorization.k8s.io/v1/Role', 'IRole'],
  'rbac.authorization.k8s.io/v1/RoleBinding': [
    'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding',
    'IRoleBinding',
  ],
  'apiextensions.k8s.io/v1/CustomResourceDefinition': [
    'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition',
    'ICustomResourceDefinition',
  ],
  'gateway.networking.k8s.io/v1/GatewayClass': [
    '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GatewayClass',
    'IGatewayClass',
  ],
  'gateway.networking.k8s.io/v1/Gateway': [
    '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway',
    'IGateway',
  ],
};

test('no manifest object has a field its kind does not define', () => {
  const all = loadAll();
  /** module → the local name its interface is imported as. */
  const aliases = new Map<string, string>();
  const header: string[] = [];
  const lines: string[] = [];
  const where: string[] = [];
  for (const l of all) {
    const t = TYPES[`${String(l.obj.apiVersion)}/${String(l.obj.kind)}`];
    assert.ok(t, `${describeObj(l)}: no TypeScript type for it: add one to TYPES`);
    const [module, name] = t;
    if (!aliases.has(module)) {
      aliases.set(module, `T${aliases.size}`);
      header.push(`import type { ${name} as ${aliases.get(module)!} } from '${module}';`);
    }
    // One object per line: a diagnostic's line says which object it is about.
    where.push(describeObj(l));
    lines.push(`export const o${where.length - 1}: ${aliases.get(module)!} = ${JSON.stringify(l.obj)};`);
  }
  const text = [...header, ...lines].join('\n') + '\n';
  // A file in the repository, so that node_modules resolves as for any test; it exists only in memory.
  const file = join(ROOT, 'test/unit/manifests/__manifests_typecheck__.ts');
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, text, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (name === file ? text : readFile(name));
  const program = ts.createProgram([file], options, host);
  const source = program.getSourceFile(file)!;
  const problems = ts.getPreEmitDiagnostics(program, source).map((d) => {
    const line = d.start === undefined ? -1 : source.getLineAndCharacterOfPosition(d.start).line;
    const obj = line >= header.length ? where[line - header.length] : 'imports';
    return `${obj}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n  ')}`;
  });
  assert.deepEqual(problems, []);
});
