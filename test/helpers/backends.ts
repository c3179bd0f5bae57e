/**
 * The backends the suite runs every backend-generic test on: 'js' always, 'native' and 'cuda'
 * when they can run here. A backend that cannot run is reported once with its reason.
 */
import { backends } from '../../lib/index';
import type { BackendName } from '../../lib/index';

const reported = new Set<string>();

export function availableBackends(): BackendName[] {
  const out: BackendName[] = [];
  for (const r of backends()) {
    if (r.available) out.push(r.name);
    else if (!reported.has(r.name)) {
      reported.add(r.name);
      // A skipped backend says why, so a green run never hides what it did not cover.
      console.log(`[adamp tests] backend '${r.name}' skipped: ${r.reason}`);
    }
  }
  // ADAMP_TEST_BACKENDS=js,native narrows (or requires) the list, e.g. for CI legs.
  const want = process.env.ADAMP_TEST_BACKENDS;
  if (want) {
    const list = want.split(',').map((s) => s.trim()).filter(Boolean) as BackendName[];
    for (const b of list) if (!out.includes(b)) throw new Error(`ADAMP_TEST_BACKENDS requires '${b}', which is not available`);
    return list;
  }
  return out;
}
