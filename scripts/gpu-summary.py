#!/usr/bin/env python3
"""Writes summary.json for scripts/gpu-validate.sh and scripts/gpu-validate-more.sh.

Called after every step (so a run cut short still leaves the truth up to that point):

    python3 scripts/gpu-summary.py OUT STATUS

OUT holds .plan (name<TAB>timeout<TAB>what, in run order), .steps (name<TAB>result<TAB>rc<TAB>seconds
<TAB>note, one line per finished step; result is passed, failed, timed_out or skipped), .facts
(key<TAB>value) and whatever the steps wrote (build.log, sass.txt, bench_cuda.json,
bench_torch.json, node.json, sweep.json, ...). STATUS is running, done or dry-run; the final
status is passed when every step that ran passed, else failed. Standard library only.
"""
import json
import os
import re
import sys


def read_tsv(path, ncols):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.rstrip('\n')
                if line:
                    parts = line.split('\t')
                    rows.append(parts + [''] * (ncols - len(parts)))
    return rows


def load_json(out, name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception:  # noqa: BLE001 - absent or partial files are normal mid-run
        return None


def ptxas_facts(out):
    """Registers, spills and stack of every kernel from the build log (-Xptxas -v)."""
    path = os.path.join(out, 'build.log')
    if not os.path.exists(path):
        return None
    facts, current = {}, None
    with open(path, errors='replace') as f:
        for line in f:
            m = re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line)
            if m:
                current = m.group(1)
                facts.setdefault(current, {'arch': m.group(2)})
                continue
            if current is None:
                continue
            m = re.search(r'(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads', line)
            if m:
                facts[current].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
            m = re.search(r'Used (\d+) registers', line)
            if m:
                facts[current]['registers'] = int(m.group(1))
    return {demangle(k): v for k, v in facts.items()} or None


def demangle(name):
    m = re.match(r'_ZN10adamp_cuda(\d+)(\w+?)I?N5adamp(\d+)(\w+?)E', name)
    if m:
        kernel = m.group(2)[: int(m.group(1))]
        policy = m.group(4)[: int(m.group(3))]
        return f'{kernel}<{policy}>'
    m = re.match(r'_ZN10adamp_cuda(\d+)(\w+)', name)
    if m:
        return m.group(2)[: int(m.group(1))]
    return name


def sass_facts(out):
    """Per kernel: CCTL.IVALL (an L1 invalidation after a fence), local loads/stores, instructions."""
    path = os.path.join(out, 'sass.txt')
    if not os.path.exists(path):
        return None
    facts, current = {}, None
    with open(path, errors='replace') as f:
        for line in f:
            m = re.search(r'Function : (\S+)', line)
            if m:
                current = demangle(m.group(1))
                facts.setdefault(current, {'cctl_ivall': 0, 'ldl': 0, 'stl': 0, 'membar': 0, 'instructions': 0})
                continue
            if current is None or not re.search(r'/\*[0-9a-f]{4,}\*/', line):
                continue
            k = facts[current]
            k['instructions'] += 1
            if 'CCTL.IVALL' in line:
                k['cctl_ivall'] += 1
            if re.search(r'\bLDL\b|\bLDL\.', line):
                k['ldl'] += 1
            if re.search(r'\bSTL\b|\bSTL\.', line):
                k['stl'] += 1
            if 'MEMBAR' in line:
                k['membar'] += 1
    return facts or None


def figures(out):
    ours, theirs = load_json(out, 'bench_cuda.json'), load_json(out, 'bench_torch.json')
    figs, targets = {}, {}
    if not ours:
        return None, None
    for name, o in ours.get('sets', {}).items():
        f = {k: o[k]['stream']['median_ms'] for k in ('adamp', 'sgdp', 'adamw', 'sgd') if k in o}
        for k in ('adamp', 'sgdp', 'adamw', 'sgd'):
            if k in o:
                f[f'{k}_fraction_of_bound'] = o[k]['fraction_of_bound']
                if o[k].get('graph'):
                    f[f'{k}_graph_ms'] = o[k]['graph']['median_ms']
        t = (theirs or {}).get('sets', {}).get(name)
        if t:
            anchor = {key: t[key]['median_ms'] for key in ('adam_fused', 'adamw_fused', 'sgd_foreach', 'adamp_eager', 'sgdp_eager') if key in t}
            f.update({f'torch_{k}_ms': v for k, v in anchor.items()})
            if 'adamp' in f and 'adam_fused' in anchor:
                f['adamp_vs_torch_adam_fused'] = f['adamp'] / anchor['adam_fused']
            if 'adamw' in f and 'adamw_fused' in anchor:
                f['adamw_vs_torch_adamw_fused'] = f['adamw'] / anchor['adamw_fused']
            if 'sgdp' in f and 'sgd_foreach' in anchor:
                f['sgdp_vs_torch_sgd_foreach'] = f['sgdp'] / anchor['sgd_foreach']
            if 'sgd' in f and 'sgd_foreach' in anchor:
                f['sgd_vs_torch_sgd_foreach'] = f['sgd'] / anchor['sgd_foreach']
            if 'adamp' in f and 'adamp_eager' in anchor:
                f['eager_adamp_over_ours'] = anchor['adamp_eager'] / f['adamp']
            targets[name] = {
                'adamp <= 1.10x torch Adam(fused)': f.get('adamp_vs_torch_adam_fused', 99) <= 1.10,
                'sgdp <= 1.10x torch SGD(foreach)': f.get('sgdp_vs_torch_sgd_foreach', 99) <= 1.10,
                'adamp >= 20x faster than eager AdamP': f.get('eager_adamp_over_ours', 0) >= 20,
            }
        figs[name] = f
    return figs, targets or None


def main():
    out, status = sys.argv[1], sys.argv[2]
    plan = read_tsv(os.path.join(out, '.plan'), 3)
    done = read_tsv(os.path.join(out, '.steps'), 5)
    facts = dict((k, v) for k, v in read_tsv(os.path.join(out, '.facts'), 2))
    steps = {}
    for name, timeout, what in plan:
        steps[name] = {'status': 'planned', 'timeout_s': int(timeout), 'what': what}
    for name, result, rc, secs, note in done:
        s = steps.setdefault(name, {})
        s.update(status=result, rc=int(rc) if rc not in ('', '-') else None, seconds=int(secs) if secs else None)
        if note:
            s['note'] = note
        log = os.path.join(out, f'{name}.log')
        if os.path.exists(log):
            s['log'] = f'{name}.log'
    failed = [n for n, s in steps.items() if s['status'] in ('failed', 'timed_out')]
    if status == 'done':
        status = 'failed' if failed else 'passed'
    figs, targets = figures(out)
    summary = {
        'status': status,
        'failed_steps': failed,
        'skipped': {n: s.get('note', '') for n, s in steps.items() if s['status'] == 'skipped'},
        **facts,
        'steps': steps,
        'ptxas': ptxas_facts(out),
        'sass': sass_facts(out),
        'figures': figs,
        'targets': targets,
        'node': load_json(out, 'node.json'),
        'sweep': (load_json(out, 'sweep.json') or {}).get('sets'),
        'min_blocks': {k: load_json(out, f'bench_mb{k}.json') for k in ('2', '3', '4', 'call') if load_json(out, f'bench_mb{k}.json')} or None,
        'node_bench': load_json(out, 'bench_node.json'),
    }
    tmp = os.path.join(out, 'summary.json.tmp')
    with open(tmp, 'w') as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, os.path.join(out, 'summary.json'))  # readers never see half a file
    if status not in ('running', 'dry-run'):
        print(f"[gpu-summary] {status}; failed: {', '.join(failed) or 'none'}; "
              f"skipped: {', '.join(summary['skipped']) or 'none'}")
        for name, f in (figs or {}).items():
            parts = [f"{k} {f[k]:.4f} ms" for k in ('adamp', 'sgdp', 'adamw', 'sgd') if k in f]
            ratios = [f"{k} {f[k]:.2f}" for k in f if k.endswith(('_vs_torch_adam_fused', '_vs_torch_sgd_foreach', '_vs_torch_adamw_fused', 'eager_adamp_over_ours'))]
            print(f"[gpu-summary] {name}: {', '.join(parts)}; {', '.join(ratios)}")


if __name__ == '__main__':
    main()
