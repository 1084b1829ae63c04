/**
 * Builders of the controller's kube objects for translation tables: each returns a valid object,
 * which a case overrides field by field.
 */
import {
  EMPTY_SNAPSHOT,
  type EndpointSlice,
  type Gateway,
  type KubeSnapshot,
  type Namespace,
  type PeerAuthentication,
  type Pod,
  type Service,
  type ServiceEntry,
  type SliceEndpoint,
  type WorkloadEntry,
} from '../../../src/controller/translate/kube-types.ts';
import type { TranslateOptions } from '../../../src/controller/translate/workloads.ts';

export const OPTIONS: TranslateOptions = {
  clusterId: 'Kubernetes',
  trustDomain: 'cluster.local',
  clusterDomain: 'cluster.local',
  rootNamespace: 'istio-system',
};

export const AMBIENT: Namespace = { name: 'default', labels: { 'istio.io/dataplane-mode': 'ambient' } };

export function snapshot(over: Partial<KubeSnapshot>): KubeSnapshot {
  return { ...EMPTY_SNAPSHOT, namespaces: [AMBIENT], ...over };
}

export function pod(over: Partial<Pod> = {}): Pod {
  return {
    namespace: 'default',
    name: 'reviews-v1-abc',
    uid: '',
    labels: { app: 'reviews', version: 'v1' },
    annotations: {},
    nodeName: 'node-1',
    serviceAccountName: 'bookinfo-reviews',
    podIPs: ['10.0.1.5'],
    phase: 'Running',
    ready: true,
    ownerReferences: [],
    hostNetwork: false,
    containerPorts: [{ name: 'http', containerPort: 9080, protocol: 'TCP' }],
    ...over,
  };
}

export function service(over: Partial<Service> = {}): Service {
  return {
    namespace: 'default',
    name: 'reviews',
    labels: {},
    type: 'ClusterIP',
    selector: { app: 'reviews' },
    clusterIPs: ['10.96.0.3'],
    ports: [{ name: 'http', port: 9080, targetPort: 9080, protocol: 'TCP', appProtocol: '' }],
    ...over,
  };
}

export function endpoint(over: Partial<SliceEndpoint> = {}): SliceEndpoint {
  return { addresses: ['10.0.9.1'], ready: true, targetRef: undefined, nodeName: '', ...over };
}

export function slice(over: Partial<EndpointSlice> = {}): EndpointSlice {
  return {
    namespace: 'default',
    name: 'legacy-abc12',
    labels: { 'kubernetes.io/service-name': 'legacy' },
    addressType: 'IPv4',
    endpoints: [endpoint()],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: '' }],
    ...over,
  };
}

export function workloadEntry(over: Partial<WorkloadEntry> = {}): WorkloadEntry {
  return {
    address: '192.0.2.10',
    ports: {},
    labels: {},
    network: '',
    locality: '',
    weight: undefined,
    serviceAccount: '',
    ...over,
  };
}

export function serviceEntry(over: Partial<ServiceEntry> = {}): ServiceEntry {
  return {
    namespace: 'default',
    name: 'external-db',
    labels: {},
    annotations: {},
    hosts: ['db.example.com'],
    addresses: [],
    ports: [{ number: 5432, protocol: 'TCP', name: 'pg', targetPort: undefined }],
    location: 'MESH_EXTERNAL',
    resolution: 'STATIC',
    endpoints: [workloadEntry()],
    workloadSelector: undefined,
    subjectAltNames: [],
    ...over,
  };
}

export function peerAuthentication(over: Partial<PeerAuthentication> = {}): PeerAuthentication {
  return {
    namespace: 'default',
    name: 'default',
    creationTimestamp: '',
    selector: undefined,
    mode: 'STRICT',
    portLevelMtls: [],
    ...over,
  };
}

export function gateway(over: Partial<Gateway> = {}): Gateway {
  return {
    namespace: 'default',
    name: 'waypoint',
    labels: { 'istio.io/waypoint-for': 'service' },
    annotations: {},
    gatewayClassName: 'istio-waypoint',
    listeners: [{ name: 'mesh', hostname: '', port: 15008, protocol: 'HBONE' }],
    addresses: [],
    statusAddresses: [],
    ...over,
  };
}
