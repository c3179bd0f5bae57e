/**
 * `adamp/tfjs` as users load it: from the built package (dist/, through package.json `exports`),
 * in a child process that imports nothing else of adamp. The adapter registers the backends it
 * can use itself: `backend` is 'native' when the addon loads, else 'js', and the report says why.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';
import { backends } from '../lib/index';

const root = path.join(__dirname, '..');

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function lastJson(out: string): Record<string, unknown> {
  return JSON.parse(out.trim().split('\n').pop()!);
}

test('require("adamp/tfjs") alone: backend is native when the addon loads, else js with the reason; a step runs', () => {
  const out = node(['-e', `
    const tf = require('@tensorflow/tfjs-core');
    require('@tensorflow/tfjs-backend-cpu');
    const { AdamP, SGDP, backends } = require('adamp/tfjs');
    const native = backends().find((b) => b.name === 'native');
    (async () => {
      console.warn = () => {};
      await tf.setBackend('cpu');
      const v = tf.variable(tf.ones([3, 2]), true, 'w');
      const opt = new AdamP({ lr: 0.1 });
      opt.applyGradients({ w: tf.ones([3, 2]) }); // through copies: the tensor tf.ones made still shares w's data
      opt.applyGradients({ w: tf.ones([3, 2]) }); // on the cpu backend's arrays
      const loadedRoot = Object.keys(require.cache).some((k) => /dist[\\\\/]lib[\\\\/]index\\.js$/.test(k));
      console.log(JSON.stringify({
        adamp: opt.backend, sgdp: new SGDP({ lr: 0.1 }).backend, native: native.available, reason: native.reason,
        moved: v.dataSync()[0] !== 1, path: opt.lastStepPaths.w, loadedRoot,
      }));
    })();
  `]);
  const r = lastJson(out);
  const here = backends().find((b) => b.name === 'native')!;
  expect(r.loadedRoot).toBe(false); // only adamp/tfjs was imported
  expect(r.native).toBe(here.available);
  const expected = here.available ? 'native' : 'js';
  expect(r.adamp).toBe(expected);
  expect(r.sgdp).toBe(expected);
  if (!here.available) {
    expect(r.reason).toMatch(/native addon could not be loaded/);
    console.log(`[adamp tests] adamp/tfjs runs on 'js' here: ${String(r.reason).split('\n')[0]}`);
  }
  expect(r.moved).toBe(true);
  expect(r.path).toBe('cpu');
});

test('import { AdamP } from "adamp/tfjs" works from an ES module, and its typings exist', () => {
  const out = node(['--input-type=module', '-e', `
    import { AdamP, SGDP, AdamW, SGD, registerOptimizers, layerChannelView } from 'adamp/tfjs';
    console.log([AdamP, SGDP, AdamW, SGD, registerOptimizers, layerChannelView].map((x) => typeof x).join(' '), SGD.className);
  `]);
  expect(out.trim()).toBe('function function function function function function adamp.SGD');
  const pkg = require(path.join(root, 'package.json'));
  expect(pkg.exports['./tfjs'].types).toBe('./dist/lib/tfjs/index.d.ts');
  expect(require('fs').existsSync(path.join(root, 'dist', 'lib', 'tfjs', 'index.d.ts'))).toBe(true);
});
