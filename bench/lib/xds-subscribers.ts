/**
 * A child process holding N xDS subscribers (our agent-side Delta ADS client) to one controller.
 * argv: <target host:port> <count>. IPC: sends {kind:'synced', atMs} once every client has its first
 * full set; on {kind:'watch', name} replies {kind:'arrived', name, atMs} when every client holds the
 * Address resource `name`.
 */
import { credentials } from '@grpc/grpc-js';
import { silentLogger } from '../../src/core/log.ts';
import { TypeUrl } from '../../src/core/proto/load.ts';
import { AdsClient } from '../../src/core/xds/ads-client.ts';
import { decodeAddress, decodeAuthorization } from '../../src/core/xds/workload-proto.ts';

const [target = '', countText = '1'] = process.argv.slice(2);
const count = Number(countText);
const holds: ReadonlyMap<string, unknown>[] = [];
const watching = new Map<string, true>();
let synced = false;

const check = () => {
  if (!synced && clients.every((c) => c.isSynced())) {
    synced = true;
    process.send?.({ kind: 'synced', atMs: Date.now() });
  }
  for (const name of watching.keys()) {
    if (holds.every((h) => h.has(name))) {
      watching.delete(name);
      process.send?.({ kind: 'arrived', name, atMs: Date.now() });
    }
  }
};

const clients = Array.from({ length: count }, (_, i) => {
  holds[i] = new Map();
  return new AdsClient({
    target,
    credentials: credentials.createInsecure(),
    node: { id: `bench-agent-${i}` },
    headers: () => ({ authorization: 'Bearer bench-token' }),
    types: [
      { typeUrl: TypeUrl.Address, decode: decodeAddress },
      { typeUrl: TypeUrl.Authorization, decode: decodeAuthorization },
    ],
    onResources: (typeUrl, resources) => {
      // The client's live map: looked up, never copied.
      if (typeUrl === TypeUrl.Address) holds[i] = resources;
      check();
    },
    log: silentLogger(),
  });
});
for (const c of clients) c.start();

process.on('message', (m: { kind: string; name?: string }) => {
  if (m.kind === 'watch' && m.name) {
    watching.set(m.name, true);
    check();
  }
  if (m.kind === 'stop') {
    for (const c of clients) c.close();
    process.exit(0);
  }
});
