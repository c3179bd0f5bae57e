/**
 * docs/tfjs.md's runnable examples: every ```js block runs as users would run it (node, from the
 * package root, `require('adamp/tfjs')` resolving to the built dist/) and must exit 0. The
 * example is meant to take under 5 s on an idle machine (it prints its time); the bound checked
 * here leaves room for a loaded one.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.join(__dirname, '..');
const doc = fs.readFileSync(path.join(root, 'docs', 'tfjs.md'), 'utf8');
const blocks = [...doc.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);

test('docs/tfjs.md has a runnable example', () => {
  expect(blocks.length).toBeGreaterThan(0);
});

test.each(blocks.map((code, i) => [i, code] as const))('docs/tfjs.md js block %i runs', (i, code) => {
  const t0 = Date.now();
  const out = execFileSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  const seconds = (Date.now() - t0) / 1000;
  console.log(`[adamp tests] docs/tfjs.md js block ${i}: ${seconds.toFixed(1)} s`);
  if (i === 0) {
    expect(out).toMatch(/loss .* -> .* on the '(js|native)' backend/);
    expect(out).toMatch(/dense_Dense\d+\/kernel: (channel|layer|none) \(cpu\)/);
    expect(out).toMatch(/reloaded AdamP at iteration 48/);
  }
  expect(seconds).toBeLessThan(20);
});
