/**
 * A collective for ranks that share one process: worker threads (or the main thread and workers),
 * through SharedArrayBuffer and Atomics (docs/distributed.md, "In-process"). For tests of
 * distributed code without MPI, and for data-parallel training on the cores of one machine.
 *
 *   const group = InProcessGroup.create(4);             // on the thread that starts the ranks
 *   new Worker(file, { workerData: { handle: group.handle, rank } });
 *   const c = InProcessGroup.join(workerData.handle, workerData.rank);   // in each rank
 *
 * Each call is one or more rounds: every rank copies its part into its slot of a shared arena,
 * announces its arrival (a sequence number per rank), waits for every other rank's, and reads the
 * slots. Slots alternate between two halves of the arena with the parity of the round, so one
 * arrival per round suffices: a rank can only write a half again after every rank has arrived at
 * the next round, that is, after every rank has read this one. Reductions fold the slots in rank
 * order, so `allReduce` is always rank-ordered (and the same on every rank).
 *
 * A rank that does not arrive before the deadline makes the waiting ranks throw
 * `ERR_ADAMP_COLLECTIVE_TIMEOUT` naming it and its last call; the first rank to time out marks
 * the group failed, so the others stop waiting at once and report the same ranks. `fail(rank,
 * reason)` does the same from outside (a worker's 'exit' event).
 */
import { AdampError, invalid } from '../errors';
import {
  checkBuffer, checkGather, checkReduceScatter, checkTimeout, CollectiveError, defaultTimeoutMs, displacements, gatherInRounds, PHASES, phaseCode, rankList, where,
  type AllReduceOptions, type CallSite, type Collective, type CollectiveBuffer, type CollectiveMemory, type HostBuffer, type ReduceOp,
} from './collective';

/** What a rank needs to join: structured-cloneable (post it to workers). */
export interface InProcessHandle {
  readonly ctrl: SharedArrayBuffer;
  readonly data: SharedArrayBuffer;
  readonly size: number;
  /** Bytes per rank and half of the arena. */
  readonly slotBytes: number;
  readonly timeoutMs: number;
}

/** Control words: [failed (0 or 1 + the failing rank), reason length, 0...], then per rank [arrived, step, phase, 0]. */
const HEAD = 8;
const PER_RANK = 4;
const REASON_BYTES = 4096;

/** The thread that creates a group keeps this: its handle for the ranks, and `fail()`. */
export class InProcessGroup {
  readonly handle: InProcessHandle;

  private constructor(handle: InProcessHandle) {
    this.handle = handle;
  }

  /**
   * A group of `size` ranks. `slotBytes` bounds one round of a call per rank (default 4 MiB; larger
   * calls take several rounds); the arena holds `2 * size * slotBytes` bytes.
   */
  static create(size: number, options: { slotBytes?: number; timeoutMs?: number } = {}): InProcessGroup {
    if (!Number.isSafeInteger(size) || size < 1 || size > 4096) throw invalid(`InProcessGroup.create: size must be an integer in [1, 4096], got ${String(size)}`);
    const slot = options.slotBytes ?? 4 << 20;
    if (!Number.isSafeInteger(slot) || slot < 8) throw invalid(`InProcessGroup.create: slotBytes must be an integer >= 8, got ${String(slot)}`);
    const slotBytes = Math.ceil(slot / 8) * 8;
    const timeoutMs = options.timeoutMs === undefined ? defaultTimeoutMs() : checkTimeout(options.timeoutMs, 'InProcessGroup.create: timeoutMs');
    const ctrl = new SharedArrayBuffer(4 * (HEAD + PER_RANK * size) + REASON_BYTES);
    const words = new Int32Array(ctrl, 0, HEAD + PER_RANK * size);
    for (let r = 0; r < size; r++) words[HEAD + PER_RANK * r + 1] = -1;
    return new InProcessGroup({ ctrl, data: new SharedArrayBuffer(2 * size * slotBytes), size, slotBytes, timeoutMs });
  }

  /** Joins the group as `rank` (on the thread that runs that rank). */
  static join(handle: InProcessHandle, rank: number): InProcessCollective {
    return new InProcessCollective(handle, rank);
  }

  /** Marks the group failed because of `rank` (e.g. its worker exited): every waiting rank throws at once. */
  fail(rank: number, reason: string): void {
    markFailed(this.handle, rank, JSON.stringify({ by: -1, missing: [rank], message: reason }));
  }
}

function markFailed(h: InProcessHandle, rank: number, reason: string): boolean {
  const words = new Int32Array(h.ctrl, 0, HEAD + PER_RANK * h.size);
  if (Atomics.compareExchange(words, 0, 0, -1) !== 0) return false; // someone else was first
  const bytes = Buffer.from(reason, 'utf8').subarray(0, REASON_BYTES);
  new Uint8Array(h.ctrl, 4 * (HEAD + PER_RANK * h.size), REASON_BYTES).set(bytes);
  Atomics.store(words, 1, bytes.length);
  Atomics.store(words, 0, 1 + rank);
  for (let r = 0; r < h.size; r++) Atomics.notify(words, HEAD + PER_RANK * r);
  return true;
}

/** One rank's handle of an in-process group. */
export class InProcessCollective implements Collective {
  readonly backend = 'in-process';
  readonly rank: number;
  readonly size: number;
  readonly memory: CollectiveMemory = { host: true, device: false };
  timeoutMs: number;

  private readonly h: InProcessHandle;
  private readonly words: Int32Array;
  private seq = 0;
  private error: AdampError | null = null;

  constructor(handle: InProcessHandle, rank: number) {
    if (handle === null || typeof handle !== 'object' || !(handle.ctrl instanceof SharedArrayBuffer) || !(handle.data instanceof SharedArrayBuffer)) {
      throw invalid('InProcessGroup.join: handle must be the `handle` of an InProcessGroup');
    }
    if (!Number.isSafeInteger(rank) || rank < 0 || rank >= handle.size) throw invalid(`InProcessGroup.join: rank must be an integer in [0, ${handle.size - 1}], got ${String(rank)}`);
    this.h = handle;
    this.rank = rank;
    this.size = handle.size;
    this.timeoutMs = handle.timeoutMs;
    this.words = new Int32Array(handle.ctrl, 0, HEAD + PER_RANK * handle.size);
  }

  get broken(): AdampError | null {
    return this.error;
  }

  describe(): Record<string, unknown> {
    return { backend: this.backend, rank: this.rank, size: this.size, slotBytes: this.h.slotBytes, transport: 'SharedArrayBuffer + Atomics' };
  }

  close(): void {}

  allGather(send: CollectiveBuffer, recv: CollectiveBuffer, counts: readonly number[] | null, at?: CallSite): void {
    this.usable(at);
    const list = checkGather(this, send, recv, counts);
    const s = send as HostBuffer, r = recv as HostBuffer;
    const per = this.h.slotBytes / s.BYTES_PER_ELEMENT;
    gatherInRounds(s, r, list, this.rank, per, (snd, rcv, c) => {
      const half = this.round(snd, at);
      const disp = displacements(c);
      for (let k = 0; k < this.size; k++) if (c[k] > 0) rcv.set(this.slot(half, k, snd, c[k]), disp[k]);
    });
  }

  allReduce(buf: CollectiveBuffer, op: ReduceOp, options: AllReduceOptions = {}): void {
    this.usable(options.at);
    checkBuffer(buf, 'allReduce: buf', this.memory);
    if (op !== 'sum' && op !== 'max' && op !== 'min') throw invalid(`allReduce: op must be 'sum', 'max' or 'min', got ${String(op)}`);
    const b = buf as HostBuffer;
    const per = this.h.slotBytes / b.BYTES_PER_ELEMENT;
    // Every call takes at least one round, so that every rank makes the same number of rounds.
    for (let start = 0; start === 0 || start < b.length; start += per) {
      const chunk = b.subarray(start, Math.min(b.length, start + per)) as HostBuffer;
      const half = this.round(chunk, options.at);
      const n = chunk.length;
      chunk.set(this.slot(half, 0, chunk, n));
      for (let k = 1; k < this.size; k++) {
        const x = this.slot(half, k, chunk, n);
        // Stores into a Float32Array round the double result once: the float32 sum, max or min.
        if (op === 'sum') for (let i = 0; i < n; i++) chunk[i] = chunk[i] + x[i];
        else if (op === 'max') for (let i = 0; i < n; i++) { if (x[i] > chunk[i]) chunk[i] = x[i]; }
        else for (let i = 0; i < n; i++) { if (x[i] < chunk[i]) chunk[i] = x[i]; }
      }
    }
  }

  reduceScatter(send: CollectiveBuffer, recv: CollectiveBuffer, counts: readonly number[], options: AllReduceOptions = {}): void {
    this.usable(options.at);
    const list = checkReduceScatter(this, send, recv, counts);
    const s = send as HostBuffer, out = recv as HostBuffer;
    const per = this.h.slotBytes / s.BYTES_PER_ELEMENT;
    const lo = displacements(list)[this.rank], hi = lo + list[this.rank];
    // Rounds over the whole send buffer; each rank folds the part of its segment in the round, in rank order.
    for (let start = 0; start === 0 || start < s.length; start += per) {
      const end = Math.min(s.length, start + per);
      const half = this.round(s.subarray(start, end) as HostBuffer, options.at);
      const a = Math.max(lo, start), b = Math.min(hi, end);
      if (b <= a) continue;
      const dst = out.subarray(a - lo, b - lo);
      dst.set(this.slot(half, 0, s, end - start).subarray(a - start, b - start));
      for (let k = 1; k < this.size; k++) {
        const x = this.slot(half, k, s, end - start);
        for (let i = a; i < b; i++) dst[i - a] = dst[i - a] + x[i - start];
      }
    }
  }

  /** Rank k's slot of a half, as the element type of `like`, `n` elements. */
  private slot(half: number, k: number, like: HostBuffer, n: number): HostBuffer {
    const Ctor = like.constructor as { new(b: SharedArrayBuffer, o: number, n: number): HostBuffer };
    return new Ctor(this.h.data, (half * this.size + k) * this.h.slotBytes, n);
  }

  /** Writes this rank's part of one round, arrives, and waits for every rank; returns the half used. */
  private round(part: HostBuffer, at: CallSite | undefined): number {
    const seq = ++this.seq;
    const half = seq & 1;
    this.slot(half, this.rank, part, part.length).set(part);
    const base = HEAD + PER_RANK * this.rank;
    Atomics.store(this.words, base + 1, at?.step ?? -1);
    Atomics.store(this.words, base + 2, phaseCode(at?.phase));
    Atomics.store(this.words, base, seq);
    Atomics.notify(this.words, base);
    const deadline = Date.now() + this.timeoutMs;
    for (let k = 0; k < this.size; k++) {
      const kb = HEAD + PER_RANK * k;
      for (;;) {
        const v = Atomics.load(this.words, kb);
        if (v >= seq) break;
        this.checkFailed(at);
        const left = deadline - Date.now();
        if (left <= 0) this.timedOut(seq, at);
        Atomics.wait(this.words, kb, v, Math.min(left, 200));
      }
    }
    return half;
  }

  private timedOut(seq: number, at: CallSite | undefined): never {
    const missing: number[] = [];
    const last: string[] = [];
    for (let k = 0; k < this.size; k++) {
      const kb = HEAD + PER_RANK * k;
      if (Atomics.load(this.words, kb) >= seq) continue;
      missing.push(k);
      const step = Atomics.load(this.words, kb + 1);
      const phase = PHASES[Atomics.load(this.words, kb + 2)];
      last.push(`rank ${k}: ${phase === '' ? 'no call yet' : `last seen at ${where({ step: step < 0 ? undefined : step, phase })}`}`);
    }
    const message = `${where(at)}: ${rankList(missing)} did not reach this collective within ${this.timeoutMs} ms (dead or stalled; ${last.join('; ')})`;
    markFailed(this.h, this.rank, JSON.stringify({ by: this.rank, missing, message }));
    this.error = new CollectiveError('ERR_ADAMP_COLLECTIVE_TIMEOUT', `rank ${this.rank}: ${message}`, { rank: this.rank, step: at?.step, phase: at?.phase, missing });
    throw this.error;
  }

  /** Throws when the group was marked failed (by a rank that timed out, or by `fail()`). */
  private checkFailed(at: CallSite | undefined): void {
    if (Atomics.load(this.words, 0) <= 0) return;
    const len = Atomics.load(this.words, 1);
    const text = Buffer.from(new Uint8Array(this.h.ctrl, 4 * (HEAD + PER_RANK * this.size), len)).toString('utf8');
    let info: { by: number; missing: number[]; message: string } = { by: -1, missing: [], message: text };
    try { info = JSON.parse(text); } catch { /* keep the raw text */ }
    const who = info.by >= 0 ? `rank ${info.by} gave up: ` : '';
    this.error = new CollectiveError('ERR_ADAMP_COLLECTIVE_TIMEOUT', `rank ${this.rank} at ${where(at)}: ${who}${info.message}`,
      { rank: this.rank, step: at?.step, phase: at?.phase, missing: info.missing });
    throw this.error;
  }

  private usable(at: CallSite | undefined): void {
    if (this.error !== null) {
      throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `rank ${this.rank} at ${where(at)}: this collective failed before (${this.error.message})`,
        { rank: this.rank, step: at?.step, phase: at?.phase, missing: (this.error as CollectiveError).missing });
    }
    this.checkFailed(at);
  }
}
