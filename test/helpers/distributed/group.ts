/**
 * Runs an in-process group of ranks (worker threads sharing an InProcessGroup), each with its
 * tasks (functions of ./flows.js), and collects every rank's results.
 */
import { Worker } from 'worker_threads';
import * as path from 'path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { dist } = require('./scenario');

export interface Task {
  fn: string;
  args: Record<string, unknown>;
  keepGoing?: boolean;
}

export type RankResult =
  | { exited: false; results: Array<{ ok: boolean; value?: any; error?: { message: string; code?: string; stack?: string }; ms: number }> } // eslint-disable-line @typescript-eslint/no-explicit-any
  | { exited: true; code: number };

export async function runGroup(size: number, tasks: Task[] | ((rank: number) => Task[]),
  options: { timeoutMs?: number; failOnExit?: boolean; slotBytes?: number } = {}): Promise<RankResult[]> {
  const group = dist.InProcessGroup.create(size, { timeoutMs: options.timeoutMs ?? 60_000, slotBytes: options.slotBytes });
  const file = path.join(__dirname, 'worker.js');
  return Promise.all(Array.from({ length: size }, (_, rank) => new Promise<RankResult>((resolve, reject) => {
    const w = new Worker(file, { workerData: { handle: group.handle, rank, tasks: typeof tasks === 'function' ? tasks(rank) : tasks } });
    let posted = false;
    w.on('message', (results) => { posted = true; resolve({ exited: false, results }); });
    w.on('error', reject);
    w.on('exit', (code) => {
      if (posted) return;
      if (options.failOnExit) group.fail(rank, `its worker exited with code ${code}`);
      resolve({ exited: true, code });
    });
  })));
}

/** Every result's value, or throws with the first failure. */
export function values(res: RankResult[]): any[][] { // eslint-disable-line @typescript-eslint/no-explicit-any
  return res.map((r, rank) => {
    if (r.exited) throw new Error(`rank ${rank} exited with code ${r.code}`);
    const bad = r.results.find((x) => !x.ok);
    if (bad) throw new Error(`rank ${rank}: ${bad.error!.message}\n${bad.error!.stack ?? ''}`);
    return r.results.map((x) => x.value);
  });
}
