#!/usr/bin/env python3
"""The import picture of each crate: top-level modules, their `crate::` imports, the import
loops among them (strongly connected components), and lines per file. Usage:
    python3 scripts/imports.py [ROOT]"""
import os, re, sys
from collections import defaultdict

def crate_files(src):
    for d, _, fs in os.walk(src):
        for f in fs:
            if f.endswith('.rs'):
                yield os.path.join(d, f)

def top_module(src, path):
    rel = os.path.relpath(path, src)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith('.rs') else first

def sccs(nodes, edges):
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index: visit(v)
    return [c for c in out if len(c) > 1]

root = sys.argv[1] if len(sys.argv) > 1 else '.'
for src in ['src', 'crates/core/src', 'crates/sim/src']:
    src = os.path.join(root, src)
    if not os.path.isdir(src):
        continue
    edges, sizes = defaultdict(set), []
    mods = set()
    for p in crate_files(src):
        m = top_module(src, p)
        if m in ('lib', 'main'):
            continue
        mods.add(m)
        if os.path.basename(p) == 'tests.rs':
            continue
        text = open(p, encoding='utf-8', errors='replace').read()
        # Test modules are not part of the library's import picture.
        cut = text.find('#[cfg(test)]\nmod tests')
        if cut >= 0:
            text = text[:cut]
        sizes.append((text.count('\n'), os.path.relpath(p, root)))
        for t in re.findall(r'\bcrate::([a-z_][a-z0-9_]*)', text):
            if t != m:
                edges[m].add(t)
    loops = sccs(sorted(mods), {m: sorted(e & mods) for m, e in edges.items()} | {m: sorted(edges[m] & mods) for m in mods})
    sizes.sort(reverse=True)
    n = [s for s, _ in sizes]
    print(f"{os.path.relpath(src, root)}: {len(mods)} modules, {len(sizes)} files, "
          f"lines per file max {n[0] if n else 0}, median {sorted(n)[len(n)//2] if n else 0}")
    print(f"  import loops: {len(loops)}" + ''.join(f"\n    {' <-> '.join(c)}" for c in loops))
    print("  largest files: " + ', '.join(f"{f} ({s})" for s, f in sizes[:5]))
