/**
 * Every code block of README.md and docs/*.md that is meant to run, runs here, as a user would
 * run it: `node -e <block>` from the package root, so `require('adamp')` and
 * `require('adamp/tfjs')` resolve through the package's own `exports` to the built dist/
 * (Node's self-reference; test/global-setup.js builds dist/ before the suite).
 *
 * The rules, by a fence's info string (its first word is the language, the rest are flags):
 * - ```js: run as is (CommonJS: no top-level await; wrap async code in a function).
 * - ```ts: transpiled with `typescript.transpileModule` (CommonJS), then run the same way; the
 *   runnable ts blocks also type-check, together, against the built declarations (dist/).
 * - ```js fragment, ```ts fragment: an explained piece (it uses names it does not define, or
 *   needs a GPU); not run. The text around it says why.
 * - ```sh, ```text, ```python, ```json...: not run.
 * - Every fence names its language (a bare ``` is refused: say ```text).
 * - Expected output: HTML comments right after a runnable block (blank lines allowed between),
 *   one regular expression each, all of which must match the block's stdout:
 *   `<!-- expect: /loss 0\.\d+/ -->`.
 *
 * Each block must finish in seconds; the runner prints each block's time.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

const root = path.join(__dirname, '..');
const RUNNABLE = new Set(['js', 'javascript', 'ts', 'typescript']);
const FLAGS = new Set(['fragment']);
/** A block that takes longer than this fails: examples are meant to take a few seconds on an idle machine; this leaves room for a loaded one. */
const MAX_SECONDS = 30;

export interface DocBlock {
  /** Path relative to the package root, e.g. `docs/tfjs.md`. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  flags: string[];
  code: string;
  /** Regular expressions the block's stdout must match. */
  expects: RegExp[];
  /** Problems with the block's markup (unknown flags, an expect after a block that does not run...). */
  problems: string[];
}

const EXPECT = /^\s*<!--\s*expect:\s*\/(.*)\/([dgimsuy]*)\s*-->\s*$/;

/** The fenced code blocks of a markdown file, with their expectations. */
export function parseBlocks(file: string, text: string): DocBlock[] {
  const lines = text.split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, info] = open;
    const words = info.trim().split(/\s+/).filter(Boolean);
    const block: DocBlock = { file, line: i + 1, lang: (words[0] ?? '').toLowerCase(), flags: words.slice(1), code: '', expects: [], problems: [] };
    const body: string[] = [];
    let j = i + 1;
    const close = new RegExp(`^\\s*${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`);
    for (; j < lines.length && !close.test(lines[j]); j++) {
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j].trimStart());
    }
    if (j === lines.length) block.problems.push('the fence is never closed');
    block.code = body.join('\n') + '\n';
    if (block.lang === '') block.problems.push('the fence names no language (use ```text for output, ```sh for commands)');
    for (const f of block.flags) if (!FLAGS.has(f)) block.problems.push(`unknown flag '${f}' (known: ${[...FLAGS].join(', ')})`);
    // expectations: HTML comments after the closing fence, blank lines allowed between
    let k = j + 1;
    for (; k < lines.length; k++) {
      if (lines[k].trim() === '') continue;
      const m = EXPECT.exec(lines[k]);
      if (!m) {
        if (/<!--\s*expect/.test(lines[k])) block.problems.push(`line ${k + 1}: malformed expectation (write <!-- expect: /regex/flags -->)`);
        break;
      }
      try {
        block.expects.push(new RegExp(m[1], m[2]));
      } catch (e) {
        block.problems.push(`line ${k + 1}: ${(e as Error).message}`);
      }
    }
    if (block.expects.length > 0 && !runs(block)) block.problems.push('has expectations but does not run (a fragment, or not js/ts)');
    blocks.push(block);
    i = j;
  }
  return blocks;
}

export function runs(b: DocBlock): boolean {
  return RUNNABLE.has(b.lang) && !b.flags.includes('fragment');
}

function isTs(b: DocBlock): boolean {
  return b.lang === 'ts' || b.lang === 'typescript';
}

/** README.md, then docs/*.md in name order. */
function docFiles(): string[] {
  const docs = fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`);
  return ['README.md', ...docs];
}

const blocks = docFiles().flatMap((f) => parseBlocks(f, fs.readFileSync(path.join(root, f), 'utf8')));
const runnable = blocks.filter(runs);
const where = (b: DocBlock) => `${b.file}:${b.line}`;

function transpile(b: DocBlock): string {
  if (!isTs(b)) return b.code;
  return ts.transpileModule(b.code, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    fileName: `${b.file.replace(/[^\w]/g, '_')}_${b.line}.ts`,
  }).outputText;
}

describe('documentation blocks', () => {
  test('every block is well formed', () => {
    const problems = blocks.flatMap((b) => b.problems.map((p) => `${where(b)}: ${p}`));
    expect(problems).toEqual([]);
  });

  test('the summary: what runs and what is a fragment', () => {
    const fragments = blocks.filter((b) => RUNNABLE.has(b.lang) && !runs(b));
    console.log(`[adamp tests] docs: ${runnable.length} code blocks run, ${fragments.length} fragments (${fragments.map(where).join(', ')}), ` +
      `${blocks.length - runnable.length - fragments.length} others (sh, text, python...)`);
    expect(runnable.length).toBeGreaterThan(0);
    // the README's quick start and TF.js example are among them
    expect(runnable.filter((b) => b.file === 'README.md').length).toBeGreaterThanOrEqual(2);
  });

  test.each(runnable.map((b) => [where(b), b] as const))('%s runs', (_name, b) => {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['-e', transpile(b)], { cwd: root, encoding: 'utf8', timeout: 120_000, maxBuffer: 16 << 20 });
    const seconds = (Date.now() - t0) / 1000;
    console.log(`[adamp tests] ${where(b)} (${b.lang}): ${seconds.toFixed(1)} s`);
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`${where(b)} exited with ${r.status ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
    for (const re of b.expects) {
      if (!re.test(r.stdout)) throw new Error(`${where(b)}: the output does not match ${re}\n--- stdout\n${r.stdout}`);
    }
    expect(seconds).toBeLessThan(MAX_SECONDS);
  });

  test('the runnable ts blocks type-check against the built declarations', () => {
    const tsBlocks = runnable.filter(isTs);
    const names = new Map(tsBlocks.map((b, i) => [path.join(root, `__docs_block_${i}.ts`), b] as const));
    const options: ts.CompilerOptions = {
      target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10,
      lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'], types: ['node'], strict: true, esModuleInterop: true, skipLibCheck: true,
      noEmit: true, baseUrl: root,
      // as a user's project sees the package: its declarations
      paths: { adamp: ['dist/lib/index.d.ts'], 'adamp/tfjs': ['dist/lib/tfjs/index.d.ts'] },
    };
    const host = ts.createCompilerHost(options);
    const { getSourceFile, fileExists, readFile } = host;
    host.getSourceFile = (name, lang, ...rest) => {
      const b = names.get(path.resolve(name));
      return b ? ts.createSourceFile(name, b.code, lang) : getSourceFile.call(host, name, lang, ...rest);
    };
    host.fileExists = (name) => names.has(path.resolve(name)) || fileExists.call(host, name);
    host.readFile = (name) => names.get(path.resolve(name))?.code ?? readFile.call(host, name);
    const program = ts.createProgram([...names.keys()], options, host);
    const messages = ts.getPreEmitDiagnostics(program).map((d) => {
      const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      const b = d.file ? names.get(path.resolve(d.file.fileName)) : undefined;
      if (!d.file || d.start === undefined) return text;
      const { line } = d.file.getLineAndCharacterOfPosition(d.start);
      return b ? `${b.file}:${b.line + 1 + line}: ${text}` : `${d.file.fileName}:${line + 1}: ${text}`;
    });
    expect(messages).toEqual([]);
  });
});

describe('the block parser', () => {
  test('languages, flags, expectations, indented fences and problems', () => {
    const md = [
      '```ts', 'const a = 1;', '```', '<!-- expect: /a/ -->', '', '<!-- expect: /b/i -->', 'text',
      '```ts fragment', 'x;', '```',
      '- item', '  ```sh', '  ls', '  ```',
      '```', 'bare', '```',
      '```js fragmnet', 'y;', '```',
      '```text', 'out', '```', '<!-- expect: /out/ -->',
    ].join('\n');
    const b = parseBlocks('x.md', md);
    expect(b.map((x) => [x.lang, x.flags, x.line, runs(x)])).toEqual([
      ['ts', [], 1, true], ['ts', ['fragment'], 8, false], ['sh', [], 12, false], ['', [], 15, false], ['js', ['fragmnet'], 18, true], ['text', [], 21, false],
    ]);
    expect(b[0].code).toBe('const a = 1;\n');
    expect(b[0].expects.map(String)).toEqual(['/a/', '/b/i']);
    expect(b[2].code).toBe('ls\n');
    expect(b[3].problems).toEqual([expect.stringMatching(/names no language/)]);
    expect(b[4].problems).toEqual([expect.stringMatching(/unknown flag 'fragmnet'/)]);
    expect(b[5].problems).toEqual([expect.stringMatching(/does not run/)]);
  });
});
