#!/usr/bin/env python3
"""Import circles among the modules of a Rust crate.

Reads every `.rs` file under SRC (test modules left out), takes `crate::`, `super::`, `self::`
and child-module paths as imports of the file that defines the module named, and prints every
strongly connected component of more than one file with the imports that tie it. Exits 1 if a
circle remains once the imports *out of* the --ring files are ignored: `error.rs` names types
of the modules whose errors it wraps (the error ring, which docs/technical/architecture.md
allows); any other circle is a layering mistake.

    python3 scripts/import_circles.py kernel/src --ring error.rs
    python3 scripts/import_circles.py cli/src
"""

import argparse
import os
import re
import sys


def module_path(rel):
    parts = rel[:-3].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def read_graph(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                files[os.path.relpath(path, root)] = path
    by_module = {module_path(rel): rel for rel in files}

    def resolve(parts):
        for n in range(len(parts), 0, -1):
            if tuple(parts[:n]) in by_module:
                return by_module[tuple(parts[:n])]
        return None

    edges = {rel: set() for rel in files}
    for rel, path in files.items():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        test = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
        if test:
            text = text[: test.start()]
        text = re.sub(r"//[^\n]*", "", text)
        me = list(module_path(rel))
        children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M))
        bases = ["crate", "super", "self"] + sorted(children)
        pattern = r"\b(" + "|".join(bases) + r")((?:::\w+)*)(::\{([^}]*)\})?"
        for m in re.finditer(pattern, text):
            if not m.group(2) and not m.group(3):
                continue
            base, path_parts = m.group(1), [p for p in m.group(2).split("::") if p]
            if base in children:
                path_parts, base = [base] + path_parts, "self"
            if base == "crate":
                start = []
            elif base == "self":
                start = me
            else:  # super: the parent of this module
                start = me[:-1]
            tails = [[]]
            if m.group(4):
                tails = [
                    [p for p in t.strip().split("::") if p and p != "self"]
                    for t in m.group(4).split(",")
                    if t.strip()
                ]
            for tail in tails:
                target = resolve(start + path_parts + tail)
                if target and target != rel:
                    edges[rel].add(target)
    return edges


def circles(edges, ignore_from=()):
    graph = {v: (set() if v in ignore_from else ws) for v, ws in edges.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found, key=len, reverse=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="a crate's source folder, e.g. kernel/src")
    parser.add_argument("--ring", action="append", default=[], help="a file whose imports may close a circle")
    args = parser.parse_args()
    edges = read_graph(args.src)
    for component in circles(edges):
        print(f"{args.src}: a circle of {len(component)} files")
        members = set(component)
        for a in component:
            for b in sorted(edges[a] & members):
                print(f"    {a} -> {b}")
    left = circles(edges, ignore_from=set(args.ring))
    if left:
        for component in left:
            print(f"{args.src}: a circle beyond {args.ring or 'none'}: {', '.join(component)}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.src}: no import circle" + (f" beyond the ring of {', '.join(args.ring)}" if args.ring else ""))


if __name__ == "__main__":
    main()
