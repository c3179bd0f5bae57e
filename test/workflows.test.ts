/**
 * The GitHub Actions workflows (.github/workflows/ci.yml, gpu.yml): they parse, their structure is
 * what GitHub accepts (jobs, steps, needs, inputs), they run what the project's scripts expect
 * (`bash .ci/run`; scripts/gpu-validate.sh with the env vars its header documents; the install
 * switches scripts/install.js reads), every script they name exists, the GPU job's runner labels
 * are the ones docs/gpu-runner.md documents, and pull requests reach the self-hosted runner only
 * behind the `run-gpu` label and never from a fork.
 *
 * YAML: js-yaml (a devDependency; 3.x, the version jest already pulls in).
 */
import * as fs from 'fs';
import * as path from 'path';

const root = path.join(__dirname, '..');
const read = (rel: string): string => fs.readFileSync(path.join(root, rel), 'utf8');

type Dict = Record<string, unknown>;
interface Step {
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  env?: Record<string, string>;
  with?: Dict;
  shell?: string;
}
interface Job {
  name?: string;
  'runs-on': string | string[];
  'timeout-minutes'?: number;
  if?: string;
  needs?: string | string[];
  env?: Record<string, string>;
  strategy?: { matrix?: Record<string, unknown[]> };
  container?: { image: string } | string;
  steps: Step[];
}
interface Workflow {
  name: string;
  on: Dict;
  permissions?: Dict;
  concurrency?: Dict;
  env?: Record<string, string>;
  jobs: Record<string, Job>;
}

function loadYaml(text: string): unknown {
  let yaml: { safeLoad?: (s: string) => unknown; load: (s: string) => unknown };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    yaml = require('js-yaml');
  } catch {
    throw new Error('js-yaml (a devDependency) is not in node_modules: run npm ci');
  }
  return (yaml.safeLoad ?? yaml.load)(text); // 3.x: safeLoad; 4.x: load is the safe one
}

const files = ['.github/workflows/ci.yml', '.github/workflows/gpu.yml', '.github/workflows/release.yml'];
const text: Record<string, string> = {};
const wf: Record<string, Workflow> = {};
for (const f of files) {
  text[f] = read(f);
  wf[f] = loadYaml(text[f]) as Workflow;
}
const ci = wf['.github/workflows/ci.yml'];
const gpu = wf['.github/workflows/gpu.yml'];

const allSteps = (w: Workflow): Step[] => Object.values(w.jobs).flatMap((j) => j.steps);
const runs = (w: Workflow): string[] => allSteps(w).flatMap((s) => (s.run ? [s.run] : []));
/** The `${{ ... }}` expressions of a text. */
const expressions = (s: string): string[] => [...s.matchAll(/\$\{\{([\s\S]*?)\}\}/g)].map((m) => m[1].trim());

const JOB_KEYS = new Set(['name', 'runs-on', 'timeout-minutes', 'if', 'needs', 'env', 'strategy', 'container', 'steps', 'permissions', 'concurrency', 'defaults', 'outputs', 'services', 'environment', 'continue-on-error']);
const STEP_KEYS = new Set(['name', 'id', 'uses', 'run', 'if', 'env', 'with', 'shell', 'working-directory', 'continue-on-error', 'timeout-minutes']);
const EVENTS = new Set(['push', 'pull_request', 'workflow_dispatch', 'schedule', 'pull_request_target', 'workflow_call', 'release']);

describe.each(files)('%s', (file) => {
  const w = () => wf[file];

  test('parses to a workflow: name, triggers, read-only token, jobs with steps', () => {
    expect(typeof w().name).toBe('string');
    expect(w().on).toBeInstanceOf(Object);
    for (const e of Object.keys(w().on)) expect(EVENTS).toContain(e);
    expect(w().permissions).toEqual({ contents: 'read' });
    expect(w().concurrency).toHaveProperty('group');
    expect(Object.keys(w().jobs).length).toBeGreaterThan(0);
  });

  test('every job and step uses keys GitHub knows; every step is either `uses` or `run`; needs name real jobs', () => {
    for (const [id, job] of Object.entries(w().jobs)) {
      expect(id).toMatch(/^[A-Za-z_][\w-]*$/);
      for (const k of Object.keys(job)) expect(JOB_KEYS).toContain(k);
      expect(job['runs-on']).toBeDefined();
      expect(typeof job['timeout-minutes']).toBe('number');
      expect(Array.isArray(job.steps) && job.steps.length).toBeTruthy();
      for (const n of [job.needs ?? []].flat()) expect(Object.keys(w().jobs)).toContain(n);
      for (const s of job.steps) {
        for (const k of Object.keys(s)) expect(STEP_KEYS).toContain(k);
        expect(Number(s.uses !== undefined) + Number(s.run !== undefined)).toBe(1);
        if (s.uses) expect(s.uses).toMatch(/^[\w.-]+\/[\w./-]+@[\w.-]+$/); // owner/action@version
        if (s.env) for (const v of Object.values(s.env)) expect(typeof v).toBe('string'); // YAML 'on'/1 traps
      }
      // A matrix value a job uses is defined.
      // (Keys of `include` entries count: a matrix may be made of `include` alone.)
      const matrix = (job.strategy?.matrix ?? {}) as Record<string, unknown>;
      const defined = [...Object.keys(matrix), ...((matrix.include as Dict[] | undefined) ?? []).flatMap((e) => Object.keys(e))];
      const used = [...JSON.stringify(job).matchAll(/matrix\.(\w+)/g)].map((m) => m[1]);
      for (const m of used) expect(defined).toContain(m);
    }
  });

  test('expressions are closed and name only inputs the workflow declares', () => {
    const src = text[file];
    expect(src.split('${{').length).toBe(src.split('}}').length);
    const declared = Object.keys(((w().on.workflow_dispatch as Dict | null)?.inputs as Dict | undefined) ?? {});
    for (const e of expressions(src)) for (const m of e.matchAll(/\binputs\.(\w+)/g)) expect(declared).toContain(m[1]);
  });

  test('no `${{ }}` inside a run script (event data and inputs go through env: no script injection)', () => {
    for (const r of runs(w())) expect(expressions(r)).toEqual([]);
  });

  test('every repository script a step runs exists', () => {
    const referenced = runs(w()).flatMap((r) => [...r.matchAll(/(?:^|[\s"'=])((?:\.ci|scripts)\/[\w./-]+)/g)].map((m) => m[1]));
    expect(referenced.length).toBeGreaterThan(0);
    for (const p of referenced) expect(fs.existsSync(path.join(root, p)) ? p : `${p} (missing)`).toBe(p);
  });
});

describe('ci.yml: ordinary runners run what .ci/run runs', () => {
  test('runs `bash .ci/run` on GitHub-hosted Ubuntu for Node 20 and 22, with the npm cache', () => {
    const test = ci.jobs.test;
    expect(test['runs-on']).toBe('ubuntu-latest');
    expect(test.strategy?.matrix?.node?.map(String)).toEqual(expect.arrayContaining(['20', '22']));
    expect(test.steps.some((s) => /^bash \.ci\/run\b/m.test(s.run ?? ''))).toBe(true);
    const node = test.steps.find((s) => s.uses?.startsWith('actions/setup-node@'));
    expect(node?.with).toMatchObject({ cache: 'npm' });
    expect(ci.on).toHaveProperty('push');
    expect(ci.on).toHaveProperty('pull_request');
  });

  test('installs the tools .ci/run calls and gives node-gyp real headers (.ci/run defaults to /usr)', () => {
    const script = read('.ci/run');
    expect(script).toMatch(/cmake -S \. -B build-tests -G Ninja/);
    expect(script).toMatch(/npm_config_nodedir="\$\{npm_config_nodedir:-\/usr\}"/);
    for (const job of Object.values(ci.jobs)) {
      const all = job.steps.map((s) => s.run ?? '').join('\n');
      expect(all).toMatch(/apt-get install[^\n]*\bcmake\b/);
      expect(all).toMatch(/apt-get install[^\n]*\bninja-build\b/);
      expect(all).toMatch(/apt-get install[^\n]*\bg\+\+/);
      expect(all).toMatch(/npm_config_nodedir=.*>> "\$GITHUB_ENV"/);
    }
  });

  test('a CUDA-toolkit job makes .ci/run take its nvcc legs, and fails if they were skipped', () => {
    const cuda = ci.jobs['cuda-compile'];
    const image = typeof cuda.container === 'string' ? cuda.container : cuda.container?.image;
    expect(image).toMatch(/^nvidia\/cuda:13\.\d+\.\d+-devel-ubuntu/);
    const run = cuda.steps.map((s) => s.run ?? '').join('\n');
    expect(run).toMatch(/command -v nvcc/);
    // The leg name the job greps for is the one .ci/run prints.
    const leg = /grep -q '::: ok \.\*([^']+)'/.exec(run)?.[1];
    expect(leg).toBeDefined();
    expect(read('.ci/run')).toContain(`leg "${leg}`);
  });

  test('logs are uploaded when a job fails', () => {
    for (const job of Object.values(ci.jobs)) {
      const up = job.steps.find((s) => s.uses?.startsWith('actions/upload-artifact@'));
      expect(up?.if).toBe('failure()');
      const collect = job.steps.find((s) => s.run?.includes(`${up?.with?.path}`.replace(/\/$/, '')) && s !== up);
      expect(collect?.if).toBe('failure()');
    }
  });
});

describe('gpu.yml: the self-hosted GPU runner', () => {
  const job = () => gpu.jobs.gpu;
  const stepRunning = (re: RegExp) => job().steps.find((s) => re.test(s.run ?? ''));

  test('asks for the labels docs/gpu-runner.md documents, and the docs show how to register them', () => {
    const labels = job()['runs-on'];
    expect(labels).toEqual(['self-hosted', 'linux', 'x64', 'gpu', 'cuda']);
    const doc = read('docs/gpu-runner.md');
    expect(doc).toContain(`runs-on: [${(labels as string[]).join(', ')}]`);
    for (const l of labels) expect(doc).toMatch(new RegExp('`' + l + '`', 'i'));
    expect(doc).toMatch(/config\.sh --url \S+ --token \S+[\s\\]+.*--labels gpu,cuda/);
    expect(doc).toContain('--ephemeral');
    expect(read('README.md')).toContain('](docs/gpu-runner.md)');
  });

  test('triggers: push to main, workflow_dispatch with the validation steps as input, labelled PRs', () => {
    expect((gpu.on.push as Dict).branches).toEqual(['main']);
    const inputs = (gpu.on.workflow_dispatch as { inputs: Record<string, { default: string; description?: string }> }).inputs;
    // The step names the input offers are the steps of scripts/gpu-validate.sh's PLAN, in order.
    const script = read('scripts/gpu-validate.sh');
    const plan = /^PLAN="\n([\s\S]*?)^"/m.exec(script)?.[1] ?? '';
    const steps = plan.split('\n').filter((l) => l.trim()).map((l) => l.split(/\s+/)[0]);
    expect(steps).toEqual(expect.arrayContaining(['env', 'build', 'quick', 'bench', 'memcheck', 'node']));
    const defined = script + read('scripts/gpu-lib.sh');
    for (const st of steps) expect(defined).toMatch(new RegExp(`^\\s*step_${st}\\(\\)`, 'm'));
    const offered = /STEPS \(comma-separated; empty = all\): ([\w,]+)/.exec(inputs.steps.description ?? '')?.[1] ?? '';
    expect(offered.split(',')).toEqual(steps);
    expect(inputs.steps.default).toBe('');
    expect(Number(inputs.iters.default)).toBeGreaterThan(0);
    expect(gpu.on).toHaveProperty('pull_request');
  });

  test('pull requests run only with the run-gpu label and never from a fork', () => {
    const cond = (job().if ?? '').replace(/\s+/g, ' ');
    expect(cond).toMatch(/github\.event_name != 'pull_request' \|\|/);
    expect(cond).toContain("contains(github.event.pull_request.labels.*.name, 'run-gpu')");
    expect(cond).toContain('github.event.pull_request.head.repo.full_name == github.repository');
    expect(gpu.on).not.toHaveProperty('pull_request_target'); // would run fork code with a write token
    expect(job().steps.find((s) => s.uses?.startsWith('actions/checkout@'))?.with?.['persist-credentials']).toBe(false);
  });

  test('checks the GPU, then npm ci with the install switches scripts/install.js reads', () => {
    const names = job().steps.map((s) => s.run ?? s.uses ?? '');
    const smi = names.findIndex((r) => /nvidia-smi/.test(r));
    const ci = job().steps.findIndex((s) => /^npm ci\b/.test(s.run ?? ''));
    expect(smi).toBeGreaterThanOrEqual(0);
    expect(ci).toBeGreaterThan(smi);
    const env = job().steps[ci].env ?? {};
    const install = read('scripts/install.js');
    for (const [k, v] of Object.entries({ ADAMP_WITH_CUDA: '1', ADAMP_FORCE_BUILD: '1' })) {
      expect(env[k]).toBe(v);
      expect(install).toContain(`env.${k}`);
    }
  });

  test('runs jest on js, native and cuda', () => {
    const jest = stepRunning(/\bjest\b/);
    expect(jest?.env?.ADAMP_TEST_BACKENDS).toBe('js,native,cuda');
    expect(read('test/helpers/backends.ts')).toContain('process.env.ADAMP_TEST_BACKENDS');
  });

  test('runs scripts/gpu-validate.sh with only the env vars its header documents, OUT in the workspace', () => {
    const step = stepRunning(/^(?:[A-Z_]+=\S+ )*bash scripts\/gpu-validate\.sh$/m);
    expect(step).toBeDefined();
    // The inputs are documented in scripts/gpu-lib.sh's header ("# Env: ..."), which the script sources.
    expect(read('scripts/gpu-validate.sh')).toMatch(/^source "\$\(dirname "\$\{BASH_SOURCE\[0\]\}"\)\/gpu-lib\.sh"/m);
    const lib = read('scripts/gpu-lib.sh');
    const envDoc = /^# Env: ([\s\S]*?)^# Exit:/m.exec(lib)?.[1] ?? '';
    const documented = new Set([...envDoc.matchAll(/\b([A-Z][A-Z_]{2,})\b/g)].map((m) => m[1]));
    documented.add('OUT');
    const given = [
      ...Object.keys(step?.env ?? {}),
      ...Object.keys(job().env ?? {}).filter((k) => k !== 'RESULTS'),
      ...[...(step?.run ?? '').matchAll(/\b([A-Z][A-Z_]+)=/g)].map((m) => m[1]),
    ];
    expect(given).toEqual(expect.arrayContaining(['OUT', 'STEPS', 'ITERS', 'ADAMP_COMMIT']));
    for (const k of given) expect(documented).toContain(k);
    expect(step?.run).toMatch(/OUT="\$RESULTS"/);
    expect(job().env?.RESULTS).toMatch(/^[\w-]+/); // a folder of the workspace, not /tmp
  });

  test('uploads the result folder whatever happened, and has a timeout', () => {
    const up = job().steps.find((s) => s.uses?.startsWith('actions/upload-artifact@'));
    expect(up?.if).toBe('always()');
    expect(String(up?.with?.path).replace(/\/$/, '')).toBe(job().env?.RESULTS);
    expect(job()['timeout-minutes']).toBeGreaterThan(0);
    expect(job()['timeout-minutes']).toBeLessThanOrEqual(360);
  });
});
