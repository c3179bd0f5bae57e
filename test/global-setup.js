/**
 * Builds dist/ once before the suite, so tests that use the package as users do (require('adamp'),
 * the CLI, examples run as child processes) see the current sources. Type errors are printed
 * but do not stop the run here (tsc still emits): `npm run typecheck` is the gate for them.
 */
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

module.exports = async function globalSetup() {
  const root = path.join(__dirname, '..');
  const r = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) process.stderr.write(`\n[adamp tests] tsc reported errors while building dist/:\n${r.stdout}${r.stderr}\n`);
};
