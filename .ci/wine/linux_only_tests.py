#!/usr/bin/env python3
"""Counts the tests that are compiled out of the Windows build by design (Linux/Unix-only code:
NFQUEUE, network namespaces, Unix sockets and modes), for .ci/windows-wine.sh's closing line.

A test is compiled out when its #[test] function sits
  - in a file whose first attributes include #![cfg(target_os = "linux")] or #![cfg(unix)],
  - in a module declared under #[cfg(target_os = "linux")] / #[cfg(unix)] (and its submodules),
  - or directly under such a cfg attribute (or #[cfg(not(windows))]).
Prints "<count>\t<file>" per file and a last line "total <count>". Every gate has its reason
in a comment next to it in the source.
"""
import os
import re
import sys

GATE = re.compile(r'#\[cfg\((target_os = "linux"|unix|not\(windows\))\)\]')
INNER = re.compile(r'^#!\[cfg\((target_os = "linux"|unix)\)\]', re.M)
MOD = re.compile(r'^\s*(?:pub(?:\([^)]*\))? )?mod (\w+);', re.M)

root = sys.argv[1] if len(sys.argv) > 1 else "."
files = []
for top in ["src", "engine", "capture", "bench", "tests", "benches", "examples"]:
    for d, _, names in os.walk(os.path.join(root, top)):
        files += [os.path.join(d, n) for n in names if n.endswith(".rs")]

def module_file(parent, name):
    base = os.path.dirname(parent)
    stem = os.path.splitext(os.path.basename(parent))[0]
    if stem not in ("mod", "lib", "main"):
        base = os.path.join(base, stem)
    for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
        if os.path.exists(cand):
            return cand
    return None

def submodules(path):
    out = []
    text = open(path).read()
    for m in MOD.finditer(text):
        sub = module_file(path, m.group(1))
        if sub:
            out.append(sub)
    return out

gated = set()
for f in files:
    text = open(f).read()
    if INNER.search(text):
        gated.add(f)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = MOD.match(line)
        if m and i > 0 and GATE.search(lines[i - 1]):
            sub = module_file(f, m.group(1))
            if sub:
                gated.add(sub)
todo = list(gated)
while todo:
    for sub in submodules(todo.pop()):
        if sub not in gated:
            gated.add(sub)
            todo.append(sub)

total = 0
for f in sorted(files):
    lines = open(f).read().splitlines()
    n = 0
    for i, line in enumerate(lines):
        if line.strip() != "#[test]":
            continue
        if f in gated:
            n += 1
            continue
        j = i - 1  # attributes and comments right above (or below) the #[test]
        above = []
        while j >= 0 and (lines[j].strip().startswith("#[") or lines[j].strip().startswith("//")):
            above.append(lines[j])
            j -= 1
        k = i + 1
        while k < len(lines) and lines[k].strip().startswith("#["):
            above.append(lines[k])
            k += 1
        if any(GATE.search(a) for a in above):
            n += 1
    if n:
        print(f"{n}\t{os.path.relpath(f, root)}")
        total += n
print(f"total {total}")
