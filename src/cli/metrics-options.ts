// --metrics-listen / --metrics-allow-remote, shared by `run` and `race`.
import { report } from '../log';
import type { MetricsServer } from '../metrics/metrics';

export interface MetricsOptions {
  metricsListen?: string;
  metricsAllowRemote?: boolean;
}

export const METRICS_LISTEN_OPTION = [
  '--metrics-listen <[host:]port>',
  'serve Prometheus metrics on http://HOST:PORT/metrics (HOST defaults to 127.0.0.1; port 0 picks one)',
] as const;
export const METRICS_ALLOW_REMOTE_OPTION = ['--metrics-allow-remote', 'allow --metrics-listen on an address other than loopback'] as const;

/** Starts the metrics server if asked; says where on stderr. Throws MetricsListenError. */
export async function startMetrics(o: MetricsOptions): Promise<MetricsServer | undefined> {
  if (o.metricsListen === undefined) return undefined;
  // prom-client (and its ~90 modules) only when metrics are asked for: it costs every start otherwise.
  const { parseListenAddress, startMetricsServer } = require('../metrics/metrics') as typeof import('../metrics/metrics');
  const server = await startMetricsServer(parseListenAddress(o.metricsListen, o.metricsAllowRemote === true));
  report('info', `metrics on ${server.url}`);
  return server;
}
