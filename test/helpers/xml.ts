/**
 * A strict XML well-formedness check for the SVGs the demos write (no dependency): one root,
 * balanced and properly nested tags, quoted attributes without duplicates, known entities only.
 * Returns the elements found, so tests can look for polylines and their points.
 */
export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  depth: number;
}

const NAME = /^[A-Za-z_][\w.:-]*/;

export function parseXml(text: string): XmlElement[] {
  const elements: XmlElement[] = [];
  const stack: string[] = [];
  let i = 0;
  let roots = 0;
  const fail = (msg: string): never => {
    const line = text.slice(0, i).split('\n').length;
    throw new Error(`XML not well formed at line ${line}: ${msg}`);
  };
  const checkText = (s: string): void => {
    const bad = s.match(/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/);
    if (bad) fail(`bad entity near '${s.slice(bad.index!, bad.index! + 10)}'`);
    if (s.includes('<')) fail('stray <');
  };
  if (text.startsWith('<?xml')) {
    const end = text.indexOf('?>');
    if (end < 0) fail('unterminated XML declaration');
    i = end + 2;
  }
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    const chunk = lt < 0 ? text.slice(i) : text.slice(i, lt);
    if (chunk.trim()) {
      if (stack.length === 0) fail(`text outside the root: '${chunk.trim().slice(0, 20)}'`);
      checkText(chunk);
    }
    if (lt < 0) break;
    i = lt;
    if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i);
      if (end < 0) fail('unterminated comment');
      i = end + 3;
      continue;
    }
    if (text.startsWith('</', i)) {
      const m = NAME.exec(text.slice(i + 2));
      if (!m) fail('bad closing tag');
      const name = m![0];
      const gt = text.indexOf('>', i);
      if (gt < 0 || text.slice(i + 2 + name.length, gt).trim() !== '') fail(`bad closing tag </${name}`);
      const open = stack.pop();
      if (open !== name) fail(`</${name}> closes <${open ?? 'nothing'}>`);
      i = gt + 1;
      continue;
    }
    const m = NAME.exec(text.slice(i + 1));
    if (!m) fail('bad tag name');
    const name = m![0];
    let j = i + 1 + name.length;
    const attrs: Record<string, string> = {};
    for (;;) {
      while (/\s/.test(text[j] ?? '')) j++;
      if (text[j] === '/' && text[j + 1] === '>') { j += 2; break; }
      if (text[j] === '>') { j += 1; break; }
      const an = NAME.exec(text.slice(j));
      if (!an) fail(`bad attribute in <${name}>`);
      j += an![0].length;
      if (text[j] !== '=') fail(`attribute ${an![0]} of <${name}> has no value`);
      const q = text[j + 1];
      if (q !== '"' && q !== "'") fail(`attribute ${an![0]} of <${name}> is not quoted`);
      const end = text.indexOf(q, j + 2);
      if (end < 0) fail('unterminated attribute');
      const value = text.slice(j + 2, end);
      checkText(value);
      if (an![0] in attrs) fail(`duplicate attribute ${an![0]} in <${name}>`);
      attrs[an![0]] = value;
      j = end + 1;
    }
    const selfClosing = text[j - 2] === '/';
    if (stack.length === 0) {
      roots++;
      if (roots > 1) fail('more than one root element');
    }
    elements.push({ name, attrs, depth: stack.length });
    if (!selfClosing) stack.push(name);
    i = j;
  }
  if (stack.length) fail(`unclosed <${stack[stack.length - 1]}>`);
  if (roots !== 1) fail('no root element');
  return elements;
}

/** The points of a polyline's `points` attribute, checked to be finite numbers. */
export function polylinePoints(el: XmlElement): Array<[number, number]> {
  return el.attrs.points.trim().split(/\s+/).map((pair) => {
    const [x, y] = pair.split(',').map(Number);
    if (!Number.isFinite(x) || !Number.isFinite(y)) throw new Error(`bad point '${pair}'`);
    return [x, y];
  });
}
