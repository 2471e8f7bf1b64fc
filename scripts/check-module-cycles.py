#!/usr/bin/env python3
"""Fails when the files of a crate import each other in a cycle.

    python3 scripts/check-module-cycles.py [crates/...]

For every crate under crates/, each source file is a module; a file "imports" another when it
names one of its items by path: `crate::a::b`, `super::x`, `self::x`, or a child module it
declares (`mod net;` then `net::load_net`). Declaring a child (`mod x;`) and re-exporting
(`pub use x::Y;`) are not imports. Cycles
of such imports (a.rs uses b.rs, b.rs uses a.rs, ...) are printed with the paths that form them,
and the exit status is 1. Standard-library Python only; a text scan, not a compiler: comments
and strings are stripped first, and only paths that resolve to a file of the same crate count.
"""
import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self|[a-z_][a-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+([a-z_][a-z0-9_:]*)::\{([^;]*)\};", re.S)
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", re.M)


def strip(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def source(module: tuple, f: Path) -> str:
    """A file's text without comments and strings; a re-export (`pub use`) is the module's
    interface, not an import of its own, so it does not count."""
    return re.sub(r"\bpub(?:\([^)]*\))?\s+use\s[^;]*;", " ", strip(f.read_text()))


def modules(src: Path) -> dict:
    """Module path (tuple) -> file, for lib.rs / main.rs and everything below."""
    found = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        found[tuple(parts)] = f
    return found


def resolve(path: tuple, mods: dict):
    """The longest prefix of `path` that is a module, as a key of `mods`."""
    for n in range(len(path), -1, -1):
        if path[:n] in mods:
            return path[:n]
    return None


def reexports(module: tuple, text: str, mods: dict) -> dict:
    """Names a module re-exports (`pub use a::b::{C, D};`) -> the module they come from."""
    out = {}
    children = set(MOD_DECL.findall(text))
    for body in re.findall(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]*);", text, re.S):
        body = re.sub(r"\s+", "", body)
        prefix, _, group = body.partition("::{")
        names = group.rstrip("}").split(",") if group else [prefix.split("::")[-1]]
        prefix = prefix if group else "::".join(prefix.split("::")[:-1])
        head, *tail = prefix.split("::")
        if head == "crate":
            base = tuple(tail)
        elif head == "super":
            base = module[:-1] + tuple(tail)
        elif head == "self":
            base = module + tuple(tail)
        elif head in children:
            base = module + (head,) + tuple(tail)
        else:
            continue
        source = resolve(base, mods)
        for name in names:
            name = name.split("as")[0].strip()
            if name and source is not None:
                out[name] = source
    return out


def edges_of(module: tuple, text: str, mods: dict, exported: dict) -> dict:
    children = set(MOD_DECL.findall(text))
    # Expand `use a::{b, c::d}` groups into `a::b`, `a::c::d` (one level of braces suffices here).
    expanded = []
    for prefix, group in USE_GROUP.findall(text):
        for item in re.split(r",\s*", re.sub(r"\s+", " ", group)):
            item = item.strip().split(" as ")[0].strip("{} ")
            if item and item != "self":
                expanded.append(f"{prefix}::{item}")
            elif item == "self":
                expanded.append(prefix)
    out = {}
    for head, rest in PATH.findall(text) + [(e.split("::")[0], "::" + "::".join(e.split("::")[1:])) for e in expanded]:
        tail = tuple(p for p in rest.split("::") if p)
        if head == "crate":
            target = tail
        elif head == "super":
            base = module[:-1]
            while tail and tail[0] == "super":
                base, tail = base[:-1], tail[1:]
            target = base + tail
        elif head == "self":
            target = module + tail
        elif head in children:
            target = module + (head,) + tail
        else:
            continue
        hit = resolve(target, mods)
        # A name the module only re-exports belongs to the module it comes from.
        remaining = target[len(hit) :] if hit is not None else ()
        if remaining and remaining[0] in exported.get(hit, {}):
            hit = exported[hit][remaining[0]]
        if hit is not None and hit != module:
            out.setdefault(hit, f"{head}{rest}")
    return out


def cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
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
                result.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return result


def main() -> int:
    roots = [Path(a) for a in sys.argv[1:]] or sorted(Path("crates").glob("*"))
    failed = False
    for crate in roots:
        for src in (crate / "src",):
            if not src.is_dir():
                continue
            mods = modules(src)
            raw = {m: strip(f.read_text()) for m, f in mods.items()}
            exported = {m: reexports(m, t, mods) for m, t in raw.items()}
            graph = {m: edges_of(m, source(m, f), mods, exported) for m, f in mods.items()}
            for component in cycles(graph):
                failed = True
                names = {m: str(mods[m]) for m in component}
                print(f"{crate.name}: files that import each other in a cycle:")
                for m in component:
                    for w, via in graph[m].items():
                        if w in component:
                            print(f"  {names[m]} -> {names[w]} ({via})")
    if not failed:
        print(f"no import cycles between the files of {len(roots)} crates")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
