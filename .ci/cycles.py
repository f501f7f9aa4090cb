#!/usr/bin/env python3
"""Fails when the modules of src/ import each other in a circle.

Reads every `crate::` path (in `use` lines and in code, `use crate::{a, b::c}` groups
included) and every `super::` path of the non-test code in src/, and checks two levels:
the crate's top-level modules (each with all its submodules folded in), and inside each
module, its direct submodules. A child may use its parent; nothing else may go round.

usage: .ci/cycles.py [SRC_DIR]     exit 0: no cycle; 1: cycles, each printed with the
                                   files whose paths make each edge.
"""
import os
import re
import sys
from collections import defaultdict

root = sys.argv[1] if len(sys.argv) > 1 else "src"

modules = {}  # module path (tuple of names) -> file
for dirpath, _, files in os.walk(root):
    for f in files:
        if f.endswith(".rs"):
            parts = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            modules[tuple(parts)] = os.path.join(dirpath, f)


def without_tests(text):
    """The text without `#[cfg(test)] mod name { ... }` blocks and comments."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return re.sub(r"//[^\n]*", "", "".join(out))


def module_of(path):
    """The longest prefix of `path` that is a module."""
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in modules:
            return tuple(path[:n])
    return None


edges = defaultdict(set)  # module -> modules it names
for m, f in modules.items():
    if "tests" in m:
        continue
    text = without_tests(open(f, encoding="utf-8").read())
    paths = []
    for group in re.finditer(r"use\s+crate::\{([^;]*)\};", text, re.S):
        for item in re.split(r",(?![^{]*\})", group.group(1)):
            head = re.match(r"\s*([\w:]+)", item)
            if head:
                paths.append(head.group(1).split("::"))
    paths += [p.group(1).split("::") for p in re.finditer(r"\bcrate::((?:\w+::)*\w+)", text)]
    paths += [list(m[:-1]) + p.group(1).split("::") for p in re.finditer(r"\bsuper::((?:\w+::)*\w+)", text)]
    for p in paths:
        target = module_of(p)
        if target and target != m:
            edges[m].add(target)


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# Each edge a -> b counts at the level where a and b part: between their top-level modules,
# or between two submodules of the module they share. An edge to one's own ancestor is a
# child using its parent, allowed.
levels = defaultdict(lambda: defaultdict(set))
for a, targets in edges.items():
    for b in targets:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        if n < len(a) and n < len(b):
            levels[a[:n]][a[: n + 1]].add(b[: n + 1])

name = lambda t: "::".join(t) or "crate"
failed = False
for parent, graph in sorted(levels.items()):
    for component in cycles(graph):
        failed = True
        print(f"import cycle among {len(component)} modules under {name(parent)}: " + ", ".join(map(name, component)))
        members = set(component)
        for a in component:
            for b in sorted(graph[a]):
                if b in members:
                    sources = sorted({name(x) for x, ts in edges.items() if x[: len(a)] == a for t in ts if t[: len(b)] == b})
                    print(f"  {name(a)} -> {name(b)}  (named in {', '.join(sources)})")
if not failed:
    tops = len({m[:1] for m in modules if m and "tests" not in m})
    print(f"no import cycles among the {tops} top-level modules of {root}, nor inside any of them")
sys.exit(1 if failed else 0)
