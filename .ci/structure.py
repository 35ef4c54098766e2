#!/usr/bin/env python3
"""The house rules CI checks on the source tree (ARCHITECTURE.md, "Rules"):
no file under crates/*/src or src/ over 800 lines, and no module importing back from one that
imports it (a cycle of any length among a crate's modules, through `crate::` or `super::` paths)."""
import glob, os, re, sys

MAX_LINES = 800


def modules(src):
    out = {}
    for root, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs"):
                path = os.path.join(root, f)
                parts = os.path.relpath(path, src)[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib"):
                    parts = parts[:-1]
                out["::".join(parts)] = (path, open(path, encoding="utf-8").read())
    return out


def imports(name, text, names):
    text = re.sub(r"//[^\n]*", "", text)
    found = set()
    for group in re.finditer(r"crate::\{([^;]*?)\};", text, re.S):
        for part in re.split(r",\s*", group.group(1)):
            found.add(part.strip().split("::")[0].strip("{ \n"))
    found.update(re.findall(r"crate::([a-z_]+)::", text))
    base = name.split("::")[:-1]
    for group in re.finditer(r"super::\{([^;]*?)\};", text, re.S):
        for part in re.split(r",\s*", group.group(1)):
            found.add("::".join(base + [part.strip().split("::")[0].strip("{ \n")]))
    found.update("::".join(base + [m]) for m in re.findall(r"super::([a-z_]+)::", text))
    return {f for f in found if f in names and f != name and not name.startswith(f + "::")}


def cycles(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


problems = []
for src in sorted(glob.glob("crates/*/src")) + ["src"]:
    found = modules(src)
    graph = {name: imports(name, text, set(found)) for name, (_, text) in found.items()}
    problems += [f"{src}: modules import each other in a cycle: {c}" for c in cycles(graph)]
    for path, text in found.values():
        lines = text.count("\n")
        if lines > MAX_LINES:
            problems.append(f"{path}: {lines} lines (at most {MAX_LINES})")
for problem in problems:
    print(problem)
print(f"structure: {len(problems)} problems")
sys.exit(1 if problems else 0)
