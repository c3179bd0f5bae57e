/**
 * Builds dist/ once before the suite, so tests that use the package as users do (require('adamp'),
 * the CLI, examples run as child processes) see the current sources.
 */
'use strict';
const { execFileSync } = require('child_process');
const path = require('path');

module.exports = async function globalSetup() {
  const root = path.join(__dirname, '..');
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
};
