#!/usr/bin/env python3
"""Checks that every include points down the layers (docs/design.md, "Layers").

Usage: check_layers.py SOURCE_DIR    prints each include that reaches up, exits 1 if any
       check_layers.py --self-test   shows that the check refuses what it should

A layer may include its own headers and those of the layers it lists below; core, flows
and runtime may not include CAF (they build and test without it). Folders outside the
layers (tests, bench, examples) may include anything.
"""
import pathlib
import re
import sys
import tempfile

BELOW = {
    "core": [],
    "flows": ["core"],
    "runtime": ["core"],
    "actors": ["core", "flows", "runtime"],
    "drivers": ["core", "flows", "runtime", "actors"],  # each driver: its own folder too
    "engine": ["core", "flows", "runtime", "actors"],
    "cli": ["core", "flows", "runtime", "actors", "engine"],
}
CAF_FREE = {"core", "flows", "runtime"}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')


def layer_of(rel):
    """The layer a path belongs to: 'core', ..., or 'drivers/NAME'; None outside layers."""
    parts = rel.split("/")
    if parts[0] == "drivers":
        return "/".join(parts[:2]) if len(parts) > 2 else None
    return parts[0] if parts[0] in BELOW and len(parts) > 1 else None


def allowed(layer):
    base = layer.split("/")[0]
    return set(BELOW[base]) | {layer}


def problems(root):
    root = pathlib.Path(root)
    out = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".hpp", ".cpp", ".h") or "node_modules" in path.parts:
            continue
        rel = path.relative_to(root).as_posix()
        layer = layer_of(rel)
        if layer is None:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            quote, target = m.groups()
            if quote == "<":
                if target.startswith("caf/") and layer in CAF_FREE:
                    out.append(f"{rel}:{number}: includes <{target}>: {layer} is CAF-free")
                continue
            if "/" not in target:
                out.append(f"{rel}:{number}: includes \"{target}\": name it from the "
                           "source root (\"layer/file.hpp\")")
                continue
            to = layer_of(target)
            if to is None or to not in allowed(layer):
                ok = ", ".join(sorted(allowed(layer)))
                out.append(f"{rel}:{number}: includes \"{target}\": {layer} may use {ok}")
    return out


def self_test():
    cases = {
        "core/a.hpp": ('#include "engine/graph.hpp"', True),
        "core/b.hpp": ("#include <caf/actor.hpp>", True),
        "flows/c.cpp": ('#include "runtime/package.hpp"', True),
        "drivers/x/d.cpp": ('#include "drivers/y/e.hpp"', True),
        "drivers/x/f.cpp": ('#include "drivers/x/g.hpp"\n#include "actors/spawn.hpp"', False),
        "engine/h.cpp": ('#include "drivers/mqtt/client.hpp"', True),
        "actors/i.cpp": ('#include "local.hpp"', True),
        "cli/j.cpp": ('#include "engine/engine.hpp"\n#include <caf/all.hpp>', False),
        "tests/k.cpp": ('#include "drivers/mqtt/client.hpp"', False),
    }
    failed = False
    for rel, (text, refused) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            p = pathlib.Path(d, rel)
            p.parent.mkdir(parents=True)
            p.write_text(text + "\n")
            got = bool(problems(d))
            if got != refused:
                failed = True
                print(f"self-test: {rel} with {text!r}: "
                      f"{'refused' if got else 'accepted'}, expected the opposite")
    return 1 if failed else 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    found = problems(argv[1])
    for p in found:
        print(p)
    if found:
        print(f"{len(found)} include(s) reach up a layer (docs/design.md, \"Layers\")")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
