import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRegistry, createTcpMetrics, TCP_LABELS, type TcpLabels } from '../../../src/core/metrics.ts';

const labels = (over: Partial<TcpLabels> = {}): TcpLabels =>
  ({
    ...Object.fromEntries(TCP_LABELS.map((l) => [l, 'unknown'])),
    reporter: 'source',
    request_protocol: 'tcp',
    response_flags: '-',
    ...over,
  }) as TcpLabels;

test('TCP metrics aggregate per label set and render with Istio names at scrape time', async () => {
  const registry = createRegistry('ztunnel', false);
  const m = createTcpMetrics(registry);
  // Two lookups of equal labels give the same series; a different flag gives another.
  const a = m.series(labels({ destination_workload: 'a' }));
  assert.equal(m.series(labels({ destination_workload: 'a' })), a);
  a.opened += 2;
  a.closed += 2;
  a.received += 11;
  a.sent += 22;
  m.series(labels({ destination_workload: 'b' })).opened++;
  m.series(labels({ destination_workload: 'b', response_flags: 'DENY' })).failed++;
  m.socketsOpen('source', 1);
  m.socketsOpen('source', 1);
  m.socketsOpen('source', -1);
  const text = await registry.metrics();
  const value = (metric: string, workload: string, flag = '-') =>
    new RegExp(
      `${metric}\\{[^}]*destination_workload="${workload}"[^}]*response_flags="${flag}"[^}]*\\} (\\d+)`,
    ).exec(text)?.[1];
  assert.equal(value('istio_tcp_connections_opened_total', 'a'), '2');
  assert.equal(value('istio_tcp_connections_opened_total', 'b'), '1');
  assert.equal(value('istio_tcp_connections_closed_total', 'a'), '2');
  assert.equal(value('istio_tcp_received_bytes_total', 'a'), '11');
  assert.equal(value('istio_tcp_sent_bytes_total', 'a'), '22');
  assert.equal(value('istio_tcp_connections_failed_total', 'b', 'DENY'), '1');
  assert.equal(value('istio_tcp_connections_closed_total', 'b', 'DENY'), undefined);
  assert.match(text, /istio_tcp_sockets_open\{reporter="source"\} 1/);
  // A second scrape reports the same totals (collect resets and re-adds, never double counts).
  const again = await registry.metrics();
  assert.equal(again, text);
});
