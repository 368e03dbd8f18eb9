#!/usr/bin/env python3
"""Independent readers of simboxd's SIEM formats, for the tests (not simboxd's own code).

    siem_parse.py ecs FILE      one ECS JSON document per line (anything before the first '{'
                                is a syslog header and skipped)
    siem_parse.py cef FILE      one CEF record per line, from 'CEF:' on (header fields and the
                                extension unescaped per the CEF rules)
    siem_parse.py tsv FILE      tab-separated lines; a field starting with 'CEF:' is read as
                                CEF, one that parses as JSON is decoded

Prints one JSON array with a record per input line.
"""
import json
import sys


def unescape_cef_value(raw):
    out, i = [], 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            n = raw[i + 1]
            out.append({"n": "\n", "r": "\r"}.get(n, n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_cef(line):
    s = line[line.index("CEF:"):]
    fields, cur, i = [], [], 0
    while len(fields) < 7:
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "\\|":
            cur.append(s[i + 1])
            i += 2
        elif c == "|":
            fields.append("".join(cur))
            cur = []
            i += 1
        else:
            cur.append(c)
            i += 1
    ext = s[i:]
    # Every unescaped '=' ends a key, which starts after the previous space.
    keys, k = [], 0
    while k < len(ext):
        if ext[k] == "\\":
            k += 2
            continue
        if ext[k] == "=":
            keys.append((ext.rfind(" ", 0, k) + 1, k))
        k += 1
    pairs = {}
    for n, (start, eq) in enumerate(keys):
        end = keys[n + 1][0] - 1 if n + 1 < len(keys) else len(ext)
        key = ext[start:eq]
        if key in pairs:
            raise ValueError("key %r twice" % key)
        pairs[key] = unescape_cef_value(ext[eq + 1:end])
    return {"header": fields, "ext": pairs}


def parse_tsv(line):
    out = []
    for f in line.split("\t"):
        if f.startswith("CEF:"):
            out.append(parse_cef(f))
            continue
        try:
            out.append(json.loads(f))
        except ValueError:
            out.append(f)
    return out


def main():
    kind, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8", newline="\n") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    if kind == "ecs":
        recs = [json.loads(l[l.index("{"):]) for l in lines]
    elif kind == "cef":
        recs = [parse_cef(l) for l in lines]
    elif kind == "tsv":
        recs = [parse_tsv(l) for l in lines]
    else:
        raise SystemExit("unknown kind " + kind)
    json.dump(recs, sys.stdout)


main()
