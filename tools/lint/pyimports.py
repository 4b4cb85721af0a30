#!/usr/bin/env python3
"""The Python test and bench scripts' own imports: no circle, no shadowing.

Reads every .py file under tests/ and bench/ (ast; imports inside functions
included) and resolves each imported name to a project file the way the
scripts' sys.path does: the importer's own folder first, then the shared
helpers in tests/lib/, then another suite folder that holds the module.
Fails when
  - the imports run round a circle (a imports b imports ... a), or
  - a module outside tests/lib/ has a name of tests/lib/'s (the folder
    first on the path would hide the other one).
Prints one line per problem and "pyimports: N modules, M arrows, K problems".
Usage: pyimports.py [ROOT]"""
import ast
import os
import sys

FOLDERS = ("tests", "bench")
LIB = os.path.join("tests", "lib")


def scripts(root):
    for top in FOLDERS:
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = [x for x in dirs if x not in ("node_modules", "__pycache__")]
            for f in files:
                if f.endswith(".py"):
                    yield os.path.relpath(os.path.join(d, f), root)


def imported_names(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    files = sorted(scripts(root))
    by_name = {}
    for f in files:
        by_name.setdefault(os.path.splitext(os.path.basename(f))[0], []).append(f)
    problems = []
    lib = {os.path.splitext(os.path.basename(f))[0] for f in files if os.path.dirname(f) == LIB}
    for name in sorted(lib):
        for f in by_name[name]:
            if os.path.dirname(f) != LIB:
                problems.append("%s: shadows %s/%s.py (same module name)" % (f, LIB, name))

    def resolve(importer, name):
        cands = by_name.get(name, [])
        for folder in (os.path.dirname(importer), LIB):
            for c in cands:
                if os.path.dirname(c) == folder:
                    return c
        return cands[0] if len(cands) == 1 else None

    arrows = {f: sorted({t for t in (resolve(f, n) for n in imported_names(os.path.join(root, f)))
                         if t and t != f}) for f in files}
    # Circles: depth-first search, one report per circle found.
    state, stack, seen = {}, [], set()

    def visit(f):
        state[f] = 1
        stack.append(f)
        for t in arrows[f]:
            if state.get(t) == 1:
                circle = stack[stack.index(t):] + [t]
                key = frozenset(circle)
                if key not in seen:
                    seen.add(key)
                    problems.append("circle: " + " -> ".join(circle))
            elif t not in state:
                visit(t)
        stack.pop()
        state[f] = 2

    for f in files:
        if f not in state:
            visit(f)
    for p in problems:
        print("pyimports: " + p)
    print("pyimports: %d modules, %d arrows, %d problems"
          % (len(files), sum(len(a) for a in arrows.values()), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
