/**
 * The MPI collective (docs/distributed.md, "MPI"): Open MPI or MPICH (and MPICH's derivatives),
 * through adamp_mpi.node, which loads libmpi at run time. The package installs and runs without
 * MPI; `mpiAvailable()` says why MPI cannot be used, `mpiCollective()` initializes it.
 *
 *   // mpirun -np 4 node train.js
 *   const c = mpiCollective();                  // MPI_Init_thread once per process, a private communicator
 *   const opt = new ShardedOptimizer(AdamP, params, { lr }, { collective: c });
 *
 * Every call is non-blocking MPI polled against a deadline (`timeoutMs`): a rank that died or
 * stalls makes the others throw `ERR_ADAMP_COLLECTIVE_TIMEOUT` naming it (the ranks still waiting
 * ask each other where they are). Calls are made from the thread that created the collective.
 * Device buffers (`DeviceBuffer`) go to MPI as they are: that needs a CUDA-aware MPI build.
 */
import * as fs from 'fs';
import * as path from 'path';
import bindings from 'bindings';
import { AdampError, invalid } from '../errors';
import { PACKAGE_ROOT } from '../core/package-root';
import { mpiLauncherKind, readEnv, startedByMpiLauncher } from '../core/env';
import {
  checkBuffer, checkGather, checkReduceScatter, checkTimeout, CollectiveError, defaultTimeoutMs, dtypeOf, gatherInRounds, isDeviceBuffer, PHASES, phaseCode, rankList,
  where, type AllReduceOptions, type CallSite, type Collective, type CollectiveBuffer, type CollectiveMemory, type HostBuffer, type ReduceOp,
} from './collective';

interface CallResult {
  status: 0 | 1 | 2;
  error: string;
  elapsedMs: number;
  seq: number;
  answers?: Array<{ seq: number; step: number; phase: number } | null>;
}

/** adamp_mpi.node's exports (native/mpi/addon.cc). */
interface MpiAddon {
  load(library?: string): { flavor: string; library: string; version: string };
  init(): { rank: number; size: number; initializedHere: boolean };
  allgatherv(send: HostBuffer | bigint, recv: HostBuffer | bigint, counts: Int32Array, count: number, dtype: 0 | 1, timeoutMs: number, step: number, phase: number): CallResult;
  allreduce(buf: HostBuffer | bigint, count: number, dtype: 0 | 1, op: 0 | 1 | 2, rankOrder: boolean, timeoutMs: number, step: number, phase: number): CallResult;
  reducescatter(send: HostBuffer | bigint, recv: HostBuffer | bigint, counts: Int32Array, dtype: 0 | 1, rankOrder: boolean, timeoutMs: number, step: number, phase: number): CallResult;
  abort(code: number): void;
  finalize(): boolean;
  state(): { loaded: boolean; initialized?: boolean; initializedHere?: boolean; finalized?: boolean; broken?: boolean; seq?: number; cudaAware?: boolean | 'unknown' };
}

let addonResult: { addon: MpiAddon; path: string } | { errors: string[] } | undefined;

/** Finds and loads adamp_mpi.node (memoized): `ADAMP_MPI_ADDON_PATH`, next to `ADAMP_ADDON_PATH`, then the build folders. */
function loadMpiAddon(): { addon: MpiAddon; path: string } | { errors: string[] } {
  if (addonResult !== undefined) return addonResult;
  const errors: string[] = [];
  const files: string[] = [];
  const explicit = readEnv('ADAMP_MPI_ADDON_PATH');
  if (explicit !== undefined) files.push(path.resolve(explicit));
  else {
    const main = readEnv('ADAMP_ADDON_PATH');
    if (main !== undefined) files.push(path.join(path.dirname(path.resolve(main)), 'adamp_mpi.node'));
    try {
      const opts = { bindings: 'adamp_mpi.node', module_root: PACKAGE_ROOT, path: true } as Parameters<typeof bindings>[0];
      files.push(bindings(opts) as unknown as string);
    } catch {
      const prebuilt = path.join(PACKAGE_ROOT, 'prebuilds', `${process.platform}-${process.arch}`, 'adamp_mpi.node');
      if (fs.existsSync(prebuilt)) files.push(prebuilt);
      else errors.push(`adamp_mpi.node not found under ${PACKAGE_ROOT} (build/Release, ..., prebuilds/): build it from source with \`ADAMP_FORCE_BUILD=1 npm rebuild adamp\` (or \`npm run build:native\` in a checkout)`);
    }
  }
  for (const f of files) {
    if (!fs.existsSync(f)) { errors.push(`${f}: not found`); continue; }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(f) as MpiAddon;
      if (typeof mod.load !== 'function' || typeof mod.allgatherv !== 'function') { errors.push(`${f}: not adamp's MPI addon`); continue; }
      addonResult = { addon: mod, path: f };
      return addonResult;
    } catch (e) {
      errors.push(`${f}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  addonResult = { errors };
  return addonResult;
}

export interface MpiReport {
  available: boolean;
  /** Why not, or what it runs on. */
  reason: string;
  flavor?: string;
  library?: string;
  version?: string;
  addon?: string;
}

/** Whether MPI can be used here (loads the addon and libmpi; does not initialize MPI). Never throws. */
export function mpiAvailable(options: { library?: string } = {}): MpiReport {
  const a = loadMpiAddon();
  if (!('addon' in a)) return { available: false, reason: `adamp's MPI addon cannot be loaded: ${a.errors.join('; ')}` };
  // The launcher's MPI first: Open MPI's library under a PMI launcher (or the reverse) would
  // initialize as a singleton (a world of one) instead of joining the job.
  const given = options.library ?? readEnv('ADAMP_MPI_LIBRARY');
  const openMpi = ['libmpi.so.40'], mpich = ['libmpi.so.12', 'libmpich.so.12'];
  const list = given !== undefined ? [given]
    : process.platform === 'darwin' ? ['libmpi.40.dylib', 'libmpi.12.dylib', 'libmpi.dylib']
      : mpiLauncherKind() === 'pmi' ? [...mpich, ...openMpi, 'libmpi.so'] : [...openMpi, ...mpich, 'libmpi.so'];
  const why: string[] = [];
  for (const lib of list) {
    try {
      const r = a.addon.load(lib);
      return { available: true, reason: `${r.flavor} (${r.library})`, ...r, addon: a.path };
    } catch (e) {
      why.push((e as Error).message.replace(/^no usable MPI library: /, ''));
    }
  }
  return { available: false, reason: `no usable MPI library: ${why.join('; ')} (install Open MPI or MPICH, e.g. \`apt-get install openmpi-bin libopenmpi-dev\`, or set ADAMP_MPI_LIBRARY to libmpi's path)`, addon: a.path };
}

/** Whether this process was started by an MPI launcher (mpirun, mpiexec, srun with PMI). */
export function launchedByMpi(): boolean {
  return startedByMpiLauncher();
}

let world: MpiCollective | null = null;

export interface MpiOptions {
  /** libmpi to load (a path or a soname). Default: `ADAMP_MPI_LIBRARY`, else libmpi.so.40 (Open MPI), libmpi.so.12 or libmpich.so.12 (MPICH). */
  library?: string;
  /** Deadline of every call in milliseconds (default 10 minutes, or `ADAMP_COLLECTIVE_TIMEOUT_MS`). */
  timeoutMs?: number;
}

/**
 * The MPI collective of this process's job (MPI_COMM_WORLD, duplicated). Initializes MPI on the
 * first call (unless something else did), and finalizes it at exit (unless a call failed: a
 * pending call would make MPI_Finalize wait forever). Throws `ERR_ADAMP_BACKEND_UNAVAILABLE` with
 * the reasons when MPI cannot be loaded.
 */
export function mpiCollective(options: MpiOptions = {}): MpiCollective {
  const timeoutMs = options.timeoutMs === undefined ? undefined : checkTimeout(options.timeoutMs, 'mpiCollective: timeoutMs');
  if (world !== null) {
    if (timeoutMs !== undefined) world.timeoutMs = timeoutMs;
    return world;
  }
  const report = mpiAvailable({ library: options.library });
  if (!report.available) throw new AdampError('ERR_ADAMP_BACKEND_UNAVAILABLE', `MPI is not available: ${report.reason}`);
  const addon = (loadMpiAddon() as { addon: MpiAddon }).addon;
  let info: { rank: number; size: number; initializedHere: boolean };
  try {
    info = addon.init();
  } catch (e) {
    throw new AdampError('ERR_ADAMP_COLLECTIVE', `MPI could not be initialized: ${(e as Error).message}`);
  }
  world = new MpiCollective(addon, info.rank, info.size, report, timeoutMs ?? defaultTimeoutMs());
  process.on('exit', () => { try { addon.finalize(); } catch { /* exiting anyway */ } });
  return world;
}

/** The largest count of one MPI call (MPI counts are C ints). */
const INT_MAX = 2 ** 31 - 1;
/** Elements per round of a rank-ordered reduction (bounds its temporary memory). */
const RANK_ORDER_CHUNK = 1 << 24;

export class MpiCollective implements Collective {
  readonly backend = 'mpi';
  readonly rank: number;
  readonly size: number;
  readonly memory: CollectiveMemory;
  timeoutMs: number;
  private error: AdampError | null = null;

  /** Use `mpiCollective()`. */
  constructor(private readonly addon: MpiAddon, rank: number, size: number, private readonly report: MpiReport, timeoutMs: number) {
    this.rank = rank;
    this.size = size;
    this.timeoutMs = timeoutMs;
    const aware = addon.state().cudaAware;
    this.memory = { host: true, device: aware === undefined ? 'unknown' : aware };
  }

  get broken(): AdampError | null {
    return this.error;
  }

  describe(): Record<string, unknown> {
    return { backend: 'mpi', rank: this.rank, size: this.size, flavor: this.report.flavor, library: this.report.library, version: this.report.version, cudaAware: this.memory.device };
  }

  /** Finalizes MPI now when this package initialized it (else at exit, or never when a call failed). */
  close(): void {
    this.addon.finalize();
  }

  /** MPI_Abort: ends every rank of the job (for a rank that cannot go on and must not leave the others waiting). */
  abort(code = 1): never {
    this.addon.abort(code);
    process.exit(code);
  }

  allGather(send: CollectiveBuffer, recv: CollectiveBuffer, counts: readonly number[] | null, at?: CallSite): void {
    this.usable(at);
    const list = checkGather(this, send, recv, counts);
    const dt = dtypeOf(send) === 'float32' ? 0 : 1;
    if (isDeviceBuffer(send) || isDeviceBuffer(recv)) {
      if (!isDeviceBuffer(send) || !isDeviceBuffer(recv)) throw invalid('allGather: send and recv must both be host or both be device buffers');
      if ((recv as { length: number }).length > INT_MAX) throw invalid('allGather: device buffers of more than 2^31 - 1 elements are not split into rounds; split the call');
      this.check(this.addon.allgatherv(send.pointer, recv.pointer, Int32Array.from(list), list[this.rank], dt, this.timeoutMs, at?.step ?? -1, phaseCode(at?.phase)), at, 'all-gather');
      return;
    }
    if (this.size === 1) { (recv as HostBuffer).set(send as HostBuffer); return; }
    const per = Math.floor(INT_MAX / this.size);
    gatherInRounds(send as HostBuffer, recv as HostBuffer, list, this.rank, per, (snd, rcv, c) => {
      this.check(this.addon.allgatherv(snd, rcv, Int32Array.from(c), c[this.rank], dt, this.timeoutMs, at?.step ?? -1, phaseCode(at?.phase)), at, 'all-gather');
    });
  }

  allReduce(buf: CollectiveBuffer, op: ReduceOp, options: AllReduceOptions = {}): void {
    const at = options.at;
    this.usable(at);
    const n = checkBuffer(buf, 'allReduce: buf', this.memory);
    const code = op === 'sum' ? 0 : op === 'max' ? 1 : op === 'min' ? 2 : -1;
    if (code < 0) throw invalid(`allReduce: op must be 'sum', 'max' or 'min', got ${String(op)}`);
    const rankOrder = options.order === 'rank' && op === 'sum';
    const dt = dtypeOf(buf) === 'float32' ? 0 : 1;
    if (isDeviceBuffer(buf)) {
      if (rankOrder) throw invalid("allReduce: order 'rank' folds on the host; device buffers take order 'any' (or stage them through host memory)");
      if (n > INT_MAX) throw invalid('allReduce: device buffers of more than 2^31 - 1 elements are not split; split the call');
      this.check(this.addon.allreduce(buf.pointer, n, dt, code as 0 | 1 | 2, false, this.timeoutMs, at?.step ?? -1, phaseCode(at?.phase)), at, 'all-reduce');
      return;
    }
    if (this.size === 1) return;
    const h = buf as HostBuffer;
    const chunk = rankOrder ? RANK_ORDER_CHUNK : 1 << 30;
    // Every call makes at least one MPI call, so that every rank makes the same calls.
    for (let start = 0; start === 0 || start < n; start += chunk) {
      const part = h.subarray(start, Math.min(n, start + chunk));
      this.check(this.addon.allreduce(part, part.length, dt, code as 0 | 1 | 2, rankOrder, this.timeoutMs, at?.step ?? -1, phaseCode(at?.phase)), at, rankOrder ? 'rank-ordered all-reduce' : 'all-reduce');
    }
  }

  reduceScatter(send: CollectiveBuffer, recv: CollectiveBuffer, counts: readonly number[], options: AllReduceOptions = {}): void {
    const at = options.at;
    this.usable(at);
    const list = checkReduceScatter(this, send, recv, counts);
    const total = list.reduce((a, b) => a + b, 0);
    if (total > INT_MAX) throw invalid('reduceScatter: more than 2^31 - 1 elements in one call; split it (reduceScatterGradients does, by bucket)');
    const rankOrder = options.order === 'rank';
    if ((isDeviceBuffer(send) || isDeviceBuffer(recv)) && rankOrder) throw invalid("reduceScatter: order 'rank' folds on the host; device buffers take order 'any'");
    if (this.size === 1) { if (!isDeviceBuffer(recv)) (recv as HostBuffer).set(send as HostBuffer); return; }
    const dt = dtypeOf(send) === 'float32' ? 0 : 1;
    const ptr = (b: CollectiveBuffer) => (isDeviceBuffer(b) ? b.pointer : b);
    this.check(this.addon.reducescatter(ptr(send), ptr(recv), Int32Array.from(list), dt, rankOrder, this.timeoutMs, at?.step ?? -1, phaseCode(at?.phase)), at, rankOrder ? 'rank-ordered reduce-scatter' : 'reduce-scatter');
  }

  private check(r: CallResult, at: CallSite | undefined, what: string): void {
    if (r.status === 0) return;
    const answers = r.answers ?? [];
    const silent: number[] = [];
    const same: number[] = [];
    const elsewhere: string[] = [];
    const missing: number[] = [];
    answers.forEach((a, k) => {
      if (k === this.rank) return;
      if (a === null) { silent.push(k); missing.push(k); }
      else if (a.seq === r.seq) same.push(k);
      else {
        missing.push(k);
        elsewhere.push(`rank ${k} is waiting in ${a.seq < r.seq ? 'an earlier' : 'a later'} call (${where({ step: a.step < 0 ? undefined : a.step, phase: PHASES[a.phase] ?? 'other' })})`);
      }
    });
    const parts: string[] = [];
    if (silent.length) parts.push(`${rankList(silent)} did not answer (dead or stalled)`);
    parts.push(...elsewhere);
    if (same.length) parts.push(`${rankList(same)} ${same.length > 1 ? 'are' : 'is'} waiting in the same call`);
    const census = answers.length > 0 ? `; ${parts.join('; ')}` : '';
    if (r.status === 1) {
      this.error = new CollectiveError('ERR_ADAMP_COLLECTIVE_TIMEOUT',
        `rank ${this.rank} at ${where(at)}: the MPI ${what} did not complete within ${this.timeoutMs} ms${census}`,
        { rank: this.rank, step: at?.step, phase: at?.phase, missing });
    } else {
      this.error = new CollectiveError('ERR_ADAMP_COLLECTIVE', `rank ${this.rank} at ${where(at)}: the MPI ${what} failed: ${r.error}${census}`,
        { rank: this.rank, step: at?.step, phase: at?.phase, missing });
    }
    throw this.error;
  }

  private usable(at: CallSite | undefined): void {
    if (this.error !== null) {
      throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `rank ${this.rank} at ${where(at)}: the MPI collective failed before (${this.error.message})`,
        { rank: this.rank, step: at?.step, phase: at?.phase, missing: (this.error as CollectiveError).missing });
    }
  }
}
