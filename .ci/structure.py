#!/usr/bin/env python3
"""The house rules CI checks on the source tree (ARCHITECTURE.md, "Rules"):
no file under crates/*/src or src/ over 800 lines, no module importing back from one that
imports it (a cycle of any length among a crate's modules, through `crate::` or `super::` paths),
and no item defined in a `lib.rs` that the crate's own modules import (the crate root declares
every module, so a module naming an item defined there imports back from its importer: the item
belongs in a module of its own, re-exported by the root)."""
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


def names_in(prefixes, text):
    """The first path segment of every name imported through `prefix::` (braces nested or not)."""
    found = set()
    for prefix in prefixes:
        for start in re.finditer(prefix + r"::\{", text):
            depth, i, top, part = 1, start.end(), [], ""
            while i < len(text) and depth:
                c = text[i]
                depth += {"{": 1, "}": -1}.get(c, 0)
                if depth == 1 and c == ",":
                    top.append(part)
                    part = ""
                elif depth >= 1:
                    part += c
                i += 1
            top.append(part)
            found.update(p.strip().split("::")[0].strip("{ \n") for p in top)
        found.update(re.findall(prefix + r"::([A-Za-z_][A-Za-z0-9_]*)", text))
    return found


def root_items(src, found):
    """Items defined in the crate's lib.rs that one of its modules imports."""
    if "" not in found:
        return []
    text = re.sub(r"//[^\n]*", "", found[""][1])
    defined = set(
        re.findall(
            r"^(?:pub(?:\([^)]*\))?\s+)?(?:struct|enum|type|trait|fn|const|static|union)\s+"
            r"([A-Za-z_][A-Za-z0-9_]*)",
            text,
            re.M,
        )
    )
    defined |= set(re.findall(r"macro_rules!\s*([a-z_]+)", text))
    out = []
    for name, (path, module) in found.items():
        if name == "":
            continue
        module = re.sub(r"//[^\n]*", "", module)
        # `super::` reaches the root from a module declared by lib.rs itself.
        prefixes = ["crate"] + (["super"] if "::" not in name else [])
        used = names_in(prefixes, module) & defined
        if used:
            out.append(f"{path}: imports {sorted(used)} defined in {src}/lib.rs")
    return out


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


def check(root="."):
    """Every problem in the tree under `root`."""
    problems = []
    sources = sorted(glob.glob(os.path.join(root, "crates/*/src"))) + [os.path.join(root, "src")]
    for src in (s for s in sources if os.path.isdir(s)):
        found = modules(src)
        graph = {name: imports(name, text, set(found)) for name, (_, text) in found.items()}
        problems += [f"{src}: modules import each other in a cycle: {c}" for c in cycles(graph)]
        problems += root_items(src, found)
        for path, text in found.values():
            lines = text.count("\n")
            if lines > MAX_LINES:
                problems.append(f"{path}: {lines} lines (at most {MAX_LINES})")
    return problems


if __name__ == "__main__":
    problems = check(sys.argv[1] if len(sys.argv) > 1 else ".")
    for problem in problems:
        print(problem)
    print(f"structure: {len(problems)} problems")
    sys.exit(1 if problems else 0)
