/**
 * The collective a sharded or data-parallel step runs on (docs/distributed.md, "The collective"):
 * a small interface, all-gather and all-reduce of float32 and float64 buffers in host or device
 * memory, that an engine people already run across machines implements (MPI through the addon,
 * NCCL on GPUs), plus an in-process one for tests and worker threads on one machine.
 *
 * Every call is blocking and collective: every rank of the group makes the same calls in the same
 * order with compatible arguments. Every call has a deadline (`timeoutMs`): a rank that died or
 * stalls makes the others throw `ERR_ADAMP_COLLECTIVE_TIMEOUT` naming it, instead of hanging.
 * After any failure the collective is broken: later calls throw the first error again.
 */
import { AdampError, invalid } from '../errors';
import { describe } from '../core/describe';
import { readEnv } from '../core/env';

/** A host buffer a collective reads or writes. */
export type HostBuffer = Float32Array | Float64Array;

/** A buffer in GPU memory (CUDA-aware MPI, NCCL): the collective reads and writes it in place. */
export interface DeviceBuffer {
  readonly kind: 'device';
  /** Address of element 0. */
  readonly pointer: bigint;
  /** Elements. */
  readonly length: number;
  readonly dtype: 'float32' | 'float64';
  /** The CUDA device that holds it. */
  readonly device: number;
}

export type CollectiveBuffer = HostBuffer | DeviceBuffer;

export type ReduceOp = 'sum' | 'max' | 'min';

/** Where a call is made, for error messages: the optimizer's step and the phase of the step. */
export interface CallSite {
  step?: number;
  phase: string;
}

export interface AllReduceOptions {
  /**
   * `'any'` (default): the engine's own reduction (MPI_Allreduce, ncclAllReduce), whose summation
   * order is the implementation's. `'rank'`: the sum is taken in rank order,
   * `((x0 + x1) + x2) + ...` in the buffer's precision, on every rank: bit-reproducible for any
   * world size and equal to a single process that adds the ranks' contributions in that order.
   * `max` and `min` are exact in any order.
   */
  order?: 'any' | 'rank';
  at?: CallSite;
}

/** What a collective can work on. */
export interface CollectiveMemory {
  host: boolean;
  /** Device buffers: true (NCCL, CUDA-aware MPI), false, or 'unknown' (an MPI that cannot say). */
  device: boolean | 'unknown';
}

/** The interface a sharded step and the data-parallel helpers run on. */
export interface Collective {
  /** 'mpi', 'nccl', 'in-process', 'solo' (world size 1), or another implementation's name. */
  readonly backend: string;
  readonly rank: number;
  readonly size: number;
  readonly memory: CollectiveMemory;
  /** Deadline of every call, in milliseconds (`Infinity`: wait forever). */
  timeoutMs: number;
  /**
   * Gathers every rank's `send` into `recv`, in rank order: rank r's `counts[r]` elements follow
   * those of ranks 0..r-1. `counts` (the same array on every rank) may be `null` when every rank
   * sends `send.length` elements. `send` and `recv` have the same element type.
   */
  allGather(send: CollectiveBuffer, recv: CollectiveBuffer, counts: readonly number[] | null, at?: CallSite): void;
  /** Reduces `buf` element-wise over the ranks, in place, with the same length on every rank. */
  allReduce(buf: CollectiveBuffer, op: ReduceOp, options?: AllReduceOptions): void;
  /**
   * Optional: the reduction of `send` (the same length on every rank) over the ranks, each rank
   * receiving only its segment: `recv` gets the `counts[rank]` elements after those of ranks
   * 0..rank-1, summed (rank order with `order: 'rank'`). Half the traffic of an all-reduce: what a
   * sharded step needs of the gradients (ZeRO-2, `reduceScatterGradients`).
   */
  reduceScatter?(send: CollectiveBuffer, recv: CollectiveBuffer, counts: readonly number[], options?: AllReduceOptions): void;
  /** The error that broke this collective, or null while it works. */
  readonly broken: AdampError | null;
  /** Facts for people (library, version, transport...). */
  describe(): Record<string, unknown>;
  /** Releases the collective (MPI: finalizes when this package initialized MPI and nothing is pending). Idempotent. */
  close(): void;
}

/** The error of a failed collective: which rank saw it, at which step and phase, which ranks were missing. */
export class CollectiveError extends AdampError {
  /** The rank that threw. */
  readonly rank: number;
  readonly step: number | undefined;
  readonly phase: string | undefined;
  /** Ranks that did not arrive (timeouts) or that failed (disagreements), when known. */
  readonly missing: readonly number[];
  /**
   * The failure happened in the final agreement of a step: other ranks may have committed the
   * step (they received every vote) while this one did not. Restart from a checkpoint.
   */
  readonly inDoubt: boolean;

  constructor(code: 'ERR_ADAMP_COLLECTIVE' | 'ERR_ADAMP_COLLECTIVE_TIMEOUT', message: string,
    facts: { rank: number; step?: number; phase?: string; missing?: readonly number[]; inDoubt?: boolean }) {
    super(code, message);
    this.name = 'AdampError';
    this.rank = facts.rank;
    this.step = facts.step;
    this.phase = facts.phase;
    this.missing = facts.missing ?? [];
    this.inDoubt = facts.inDoubt ?? false;
  }
}

/** The phases of the calls this package makes, by code (shared memory and census messages carry the code). */
export const PHASES = ['', 'create', 'begin', 'partial lengths', 'partials', 'params', 'commit', 'gather params', 'gather state', 'gradients',
  'broadcast', 'checkpoint', 'barrier', 'other'];

export function phaseCode(p: string | undefined): number {
  const k = PHASES.indexOf(p ?? '');
  return k < 0 ? PHASES.length - 1 : k;
}

/** "step 12, phase 'partials'" */
export function where(at: CallSite | undefined): string {
  if (at === undefined) return 'a collective call';
  return at.step !== undefined ? `step ${at.step} ('${at.phase}')` : `'${at.phase}'`;
}

/** A list of ranks for messages: "rank 2", "ranks 1 and 3", "ranks 1, 2 and 5". */
export function rankList(ranks: readonly number[]): string {
  if (ranks.length === 0) return 'no rank';
  if (ranks.length === 1) return `rank ${ranks[0]}`;
  return `ranks ${ranks.slice(0, -1).join(', ')} and ${ranks[ranks.length - 1]}`;
}

export function isDeviceBuffer(b: unknown): b is DeviceBuffer {
  return typeof b === 'object' && b !== null && (b as DeviceBuffer).kind === 'device';
}

export function dtypeOf(b: CollectiveBuffer): 'float32' | 'float64' {
  if (isDeviceBuffer(b)) return b.dtype;
  return b instanceof Float64Array ? 'float64' : 'float32';
}

function isHost(b: unknown): b is HostBuffer {
  return b instanceof Float32Array || b instanceof Float64Array;
}

/** Checks a buffer argument; returns its length. */
export function checkBuffer(b: unknown, what: string, memory: CollectiveMemory): number {
  if (isHost(b)) {
    if (!memory.host) throw invalid(`${what}: this collective works on device buffers only, got a ${b.constructor.name}`);
    return b.length;
  }
  if (isDeviceBuffer(b)) {
    if (memory.device === false) throw invalid(`${what}: this collective cannot read device memory (not CUDA-aware); stage it through a host buffer`);
    if (typeof b.pointer !== 'bigint' || !Number.isSafeInteger(b.length) || b.length < 0 || (b.dtype !== 'float32' && b.dtype !== 'float64')) {
      throw invalid(`${what}: a device buffer needs { kind: 'device', pointer: bigint, length, dtype: 'float32' | 'float64', device }`);
    }
    return b.length;
  }
  throw invalid(`${what} must be a Float32Array, a Float64Array or a device buffer, got ${describe(b)}`);
}

/** Checks an all-gather's arguments; returns the counts (filled in when null). */
export function checkGather(c: { rank: number; size: number; memory: CollectiveMemory }, send: unknown, recv: unknown,
  counts: readonly number[] | null): number[] {
  const ns = checkBuffer(send, 'allGather: send', c.memory);
  const nr = checkBuffer(recv, 'allGather: recv', c.memory);
  if (dtypeOf(send as CollectiveBuffer) !== dtypeOf(recv as CollectiveBuffer)) throw invalid('allGather: send and recv must have the same element type');
  const list = counts === null ? new Array<number>(c.size).fill(ns) : Array.from(counts);
  if (list.length !== c.size || !list.every((x) => Number.isSafeInteger(x) && x >= 0)) {
    throw invalid(`allGather: counts must be ${c.size} non-negative integers (one per rank), got ${describe(counts)}`);
  }
  if (list[c.rank] !== ns) throw invalid(`allGather: send holds ${ns} elements, counts[${c.rank}] (this rank) says ${list[c.rank]}`);
  const total = list.reduce((a, b) => a + b, 0);
  if (nr !== total) throw invalid(`allGather: recv holds ${nr} elements, the counts add up to ${total}`);
  return list;
}

/** Checks a reduce-scatter's arguments. */
export function checkReduceScatter(c: { rank: number; size: number; memory: CollectiveMemory }, send: unknown, recv: unknown, counts: readonly number[]): number[] {
  const ns = checkBuffer(send, 'reduceScatter: send', c.memory);
  const nr = checkBuffer(recv, 'reduceScatter: recv', c.memory);
  if (dtypeOf(send as CollectiveBuffer) !== dtypeOf(recv as CollectiveBuffer)) throw invalid('reduceScatter: send and recv must have the same element type');
  const list = Array.from(counts ?? []);
  if (list.length !== c.size || !list.every((x) => Number.isSafeInteger(x) && x >= 0)) throw invalid(`reduceScatter: counts must be ${c.size} non-negative integers, got ${describe(counts)}`);
  const total = list.reduce((a, b) => a + b, 0);
  if (ns !== total) throw invalid(`reduceScatter: send holds ${ns} elements, the counts add up to ${total}`);
  if (nr !== list[c.rank]) throw invalid(`reduceScatter: recv holds ${nr} elements, counts[${c.rank}] (this rank) says ${list[c.rank]}`);
  return list;
}

/** Element offsets of each rank's part in an all-gather's recv. */
export function displacements(counts: readonly number[]): number[] {
  const out: number[] = [];
  let at = 0;
  for (const n of counts) { out.push(at); at += n; }
  return out;
}

/**
 * An all-gather of arbitrary size as rounds of at most `perRank` elements per rank (collectives
 * whose calls are bounded: MPI's int counts, the in-process arena). `round(send, recv, counts)`
 * performs one bounded all-gather.
 */
export function gatherInRounds<T extends HostBuffer>(send: T, recv: T, counts: readonly number[], rank: number, perRank: number,
  round: (send: T, recv: T, counts: number[]) => void): void {
  const max = Math.max(0, ...counts);
  if (max <= perRank) { round(send, recv, counts.slice()); return; }
  const disp = displacements(counts);
  const Ctor = send.constructor as { new(n: number): T };
  for (let start = 0; start < max; start += perRank) {
    const c = counts.map((n) => Math.max(0, Math.min(perRank, n - start)));
    const tmp = new Ctor(c.reduce((a, b) => a + b, 0));
    round(send.subarray(Math.min(start, counts[rank]), Math.min(start + perRank, counts[rank])) as T, tmp, c);
    let at = 0;
    for (let r = 0; r < counts.length; r++) {
      if (c[r] > 0) recv.set(tmp.subarray(at, at + c[r]), disp[r] + start);
      at += c[r];
    }
  }
}

/** The collective of a world of one: every call returns its input. For single-process runs of distributed code. */
export class SoloCollective implements Collective {
  readonly backend = 'solo';
  readonly rank = 0;
  readonly size = 1;
  readonly memory: CollectiveMemory = { host: true, device: false };
  timeoutMs = Infinity;
  readonly broken = null;

  allGather(send: CollectiveBuffer, recv: CollectiveBuffer, counts: readonly number[] | null): void {
    checkGather(this, send, recv, counts);
    (recv as HostBuffer).set(send as HostBuffer);
  }

  allReduce(buf: CollectiveBuffer): void {
    checkBuffer(buf, 'allReduce: buf', this.memory);
  }

  reduceScatter(send: CollectiveBuffer, recv: CollectiveBuffer, counts: readonly number[]): void {
    checkReduceScatter(this, send, recv, counts);
    (recv as HostBuffer).set(send as HostBuffer);
  }

  describe(): Record<string, unknown> {
    return { backend: 'solo', size: 1 };
  }

  close(): void {}
}

/** Checks `timeoutMs` (a positive number of milliseconds, or Infinity). */
export function checkTimeout(ms: unknown, where: string): number {
  if (ms === Infinity) return ms;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) throw invalid(`${where} must be a positive number of milliseconds or Infinity, got ${describe(ms)}`);
  return ms;
}

/** The default deadline of a collective call: 10 minutes, or `ADAMP_COLLECTIVE_TIMEOUT_MS`. */
export function defaultTimeoutMs(): number {
  const env = readEnv('ADAMP_COLLECTIVE_TIMEOUT_MS');
  if (env !== undefined) {
    const v = Number(env);
    if (Number.isFinite(v) && v > 0) return v;
  }
  return 600_000;
}
