/**
 * Loads Ambit's own .proto files (Istio's workload, authorization and CA messages, written from the
 * reference field tables) with protobufjs, once. google/protobuf/* come built into protobufjs.
 */
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

export const PROTO_DIR = fileURLToPath(new URL('.', import.meta.url));
const FILES = ['workload.proto', 'authorization.proto', 'citadel.proto', 'ambit.proto'];

let root: protobuf.Root | undefined;

/** The protobufjs root with every Ambit message; field names as in the .proto (snake_case). */
export function ambitProtos(): protobuf.Root {
  if (!root) {
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) =>
      target.startsWith('google/protobuf/') ? target : PROTO_DIR + target.replace(/^.*\//, '');
    r.loadSync(
      FILES.map((f) => PROTO_DIR + f),
      { keepCase: true },
    );
    r.resolveAll();
    root = r;
  }
  return root;
}

export const TypeUrl = {
  Address: 'type.googleapis.com/istio.workload.Address',
  Authorization: 'type.googleapis.com/istio.security.Authorization',
} as const;
export type TypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];
