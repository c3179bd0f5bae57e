/**
 * The package as users load it: `require('adamp')` and `import { AdamP } from 'adamp'` resolve
 * through package.json `exports` to the built dist/, in a real child process.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';

const root = path.join(__dirname, '..');

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
}

test('require("adamp") works from CommonJS and steps a param', () => {
  const out = node(['-e', `
    const { AdamP, SGDP, backends } = require('adamp');
    const p = { data: new Float32Array([1, 2, 3, 4]), grad: new Float32Array([0.1, -0.1, 0.2, 0]), shape: [2, 2] };
    const opt = new AdamP([p], { lr: 0.1 });
    opt.step();
    console.log(JSON.stringify({ a: typeof AdamP, s: typeof SGDP, b: backends().map((b) => b.name), moved: p.data[0] !== 1, backend: opt.backend }));
  `]);
  const r = JSON.parse(out.trim().split('\n').pop()!);
  expect(r).toMatchObject({ a: 'function', s: 'function', b: ['cuda', 'native', 'js'], moved: true });
});

test('import { AdamP } from "adamp" works from an ES module', () => {
  const out = node(['--input-type=module', '-e', `
    import { AdamP, SGDP } from 'adamp';
    import adamp from 'adamp';
    console.log(typeof AdamP, typeof SGDP, typeof adamp.backends);
  `]);
  expect(out.trim()).toBe('function function function');
});

test('the published typings exist for the entry point', () => {
  const pkg = require(path.join(root, 'package.json'));
  expect(pkg.exports['.'].types).toBe('./dist/lib/index.d.ts');
  expect(require('fs').existsSync(path.join(root, 'dist', 'lib', 'index.d.ts'))).toBe(true);
});
