#!/usr/bin/env python3
"""Counts `pub` item declarations (fn incl. methods, struct, enum, trait, const, static, type,
mod, use) a crate exports: those in modules reachable through `pub mod` chains from lib.rs,
outside #[cfg(test)] modules. Usage: pubcount.py CRATE_SRC_DIR"""
import os, re, sys
src = sys.argv[1]
ITEM = re.compile(r'^\s*pub\s+(?:async\s+|unsafe\s+|const\s+(?=fn))*(fn|struct|enum|trait|const|static|type|mod|use|union)\b')
MOD = re.compile(r'^\s*(pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;', re.M)
def strip_tests(t):
    c = t.find('#[cfg(test)]\nmod tests')
    return t[:c] if c >= 0 else t
def child(path, name):
    d = os.path.dirname(path); base = os.path.basename(path)
    if base not in ('mod.rs', 'lib.rs', 'main.rs'):
        d = os.path.join(d, base[:-3])
    for c in (os.path.join(d, name + '.rs'), os.path.join(d, name, 'mod.rs')):
        if os.path.exists(c): return c
counts = {}; total = 0; per_kind = {}
def walk(path, public, modpath):
    global total
    t = strip_tests(open(path).read())
    n = 0
    if public:
        for line in t.split('\n'):
            m = ITEM.match(line)
            if m:
                n += 1; per_kind[m.group(1)] = per_kind.get(m.group(1), 0) + 1
        counts[modpath] = n; total += n
    for m in MOD.finditer(t):
        vis, name = m.group(1), m.group(2)
        if name == 'tests': continue
        c = child(path, name)
        if c: walk(c, public and vis is not None and vis.strip() == 'pub', modpath + '::' + name)
walk(os.path.join(src, 'lib.rs'), True, 'crate')
print(f"{src}: {total} public items  " + ' '.join(f"{k}={v}" for k, v in sorted(per_kind.items())))
if '-v' in sys.argv:
    for k, v in sorted(counts.items(), key=lambda x: -x[1]): print(f"  {v:5} {k}")
