#!/usr/bin/env python3
"""The layers, checked (tests/lint.sh; README "Design").

A module is a source file with its header (lib/store.c + lib/store.h is
lib/store). Two kinds of arrows between modules are read:
  includes  every #include "x.h" of the project's C files, resolved as the
            compiler does (the file's own folder, then the layer's path);
  calls     every symbol an object file of the layers' static libraries uses
            and another defines (nm on the BUILDDIR's libmatrixrmapi-*.a).
It fails, naming each offending arrow, when
  - an arrow leaves a layer for one it may not use (MAY_USE below),
  - an include names a path ("lib/store.h") rather than a bare header,
    which would step round the per-layer include paths of meson.build,
  - the arrows between modules make a circle (each circle is printed).

    python3 tools/lint/layers.py BUILDDIR
"""
import os
import re
import subprocess
import sys

# Which folders each folder's files may use, besides their own.
MAY_USE = {
    "lib": set(),
    "reconcile": {"lib"},
    "api": {"lib"},
    "platform": {"lib"},
    "main": {"lib", "reconcile", "api", "platform"},
}
GENERATED = {"embedded.h"}  # made by tools/embed.py into the build root; lib/store.c's schema
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
OBJECT = re.compile(r"^([a-z]+)_(.+)\.c\.o$")  # meson's lib_store.c.o


def modules(root):
    """folder/stem -> list of its files."""
    found = {}
    for folder in MAY_USE:
        for name in sorted(os.listdir(os.path.join(root, folder))):
            if name.endswith((".c", ".h")):
                found.setdefault(f"{folder}/{name[:-2]}", []).append(os.path.join(folder, name))
    return found


def resolve(header, folder, mods):
    """The module a bare include names, searched as the compiler would."""
    stem = header[:-2]
    for f in [folder] + sorted(MAY_USE[folder]) + sorted(MAY_USE):
        if f"{f}/{stem}" in mods:
            return f"{f}/{stem}"
    return None


def include_arrows(root, mods, problems):
    arrows = set()
    for mod, paths in mods.items():
        folder = mod.split("/")[0]
        for path in paths:
            with open(os.path.join(root, path)) as f:
                for header in INCLUDE.findall(f.read()):
                    if "/" in header:
                        problems.append(f"{path}: includes \"{header}\": a path, not a bare header")
                        continue
                    if header in GENERATED:
                        continue
                    target = resolve(header, folder, mods)
                    if target is None:
                        problems.append(f"{path}: includes \"{header}\", which no layer has")
                    elif target != mod:
                        arrows.add((mod, target, f"{path} includes {header}"))
    return arrows


def call_arrows(builddir, mods, problems):
    defined, used = {}, []
    libs = sorted(f for f in os.listdir(builddir) if re.fullmatch(r"libmatrixrmapi-[a-z]+\.a", f))
    if len(libs) != 4:
        problems.append(f"{builddir}: {len(libs)} layer libraries (libmatrixrmapi-*.a), 4 expected")
    for lib in libs:
        out = subprocess.run(["nm", "-A", os.path.join(builddir, lib)], check=True,
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            # "path/lib.a:lib_store.c.o:0000000000000000 T store_open" or "...:                 U free"
            # (a thin archive names its members by path)
            fields = line.split(":", 2)
            if len(fields) != 3:
                continue
            rest = fields[2]
            m = OBJECT.match(os.path.basename(fields[1]))
            parts = rest.split()
            if not m or len(parts) < 2:
                continue
            mod = f"{m.group(1)}/{m.group(2)}"
            if mod not in mods:
                continue  # the generated embedded.c
            kind, sym = parts[-2], parts[-1]
            if kind == "U":
                used.append((mod, sym))
            elif kind.isupper():
                defined[sym] = mod
    arrows = set()
    for mod, sym in used:
        target = defined.get(sym)
        if target is not None and target != mod:
            arrows.add((mod, target, f"{mod}.c uses {sym}"))
    if not defined:
        problems.append(f"{builddir}: no symbols read from the layer libraries")
    return arrows


def circles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    mods = modules(root)
    problems = []
    arrows = include_arrows(root, mods, problems) | call_arrows(sys.argv[1], mods, problems)
    for a, b, why in sorted(arrows):
        fa, fb = a.split("/")[0], b.split("/")[0]
        if fa != fb and fb not in MAY_USE[fa]:
            problems.append(f"{why}: {fa}/ may not use {fb}/")
    for comp in circles({(a, b) for a, b, _ in arrows}):
        why = sorted(w for a, b, w in arrows if a in comp and b in comp)
        more = f"; and {len(why) - 12} more" if len(why) > 12 else ""
        problems.append("circle: " + ", ".join(comp) + " (" + "; ".join(why[:12]) + more + ")")
    for p in problems:
        print(f"layers: {p}")
    print(f"layers: {len(mods)} modules, {len(arrows)} arrows, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
