/**
 * A jest reporter that ends every run with one line `N passed, N failed, N skipped` (the form
 * CI reads) and writes the same counts to ADAMP_SUMMARY_FILE when set. Suites that failed to
 * run count as failures.
 */
'use strict';
const fs = require('fs');

class SummaryReporter {
  onRunComplete(_contexts, results) {
    const passed = results.numPassedTests;
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    const skipped = results.numPendingTests + results.numTodoTests;
    if (process.env.ADAMP_SUMMARY_FILE) {
      fs.writeFileSync(process.env.ADAMP_SUMMARY_FILE, JSON.stringify({ passed, failed, skipped, total: results.numTotalTests }));
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}

module.exports = SummaryReporter;
