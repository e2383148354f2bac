#!/usr/bin/env python3
"""Lists the public declarations of a module that have no documentation comment.

    scripts/undocumented.py SYMBOL_GRAPH_DIR MODULE [--root SOURCES]

Reads the symbol graphs of MODULE in SYMBOL_GRAPH_DIR: those swift-docc-plugin extracts
(`make docs` passes `.build/<triple>/extracted-symbols/<package>/MODULE`), or those the compiler
emits (`swift build --target MODULE -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir
-Xswiftc DIR -Xswiftc -symbol-graph-minimum-access-level -Xswiftc public`). Every public or open
symbol declared in this package's sources (a location under --root) must carry a doc comment of
its own. Members the compiler synthesizes or inherits (no location in our sources: `==`,
`hash(into:)`, protocol requirements' default implementations from other modules) are not ours to
document. Enum cases, members of a public declaration and extensions of other modules' types
(`extension Bool: FlowValueConvertible`, in the plugin's graphs) count like any other.

The graphs leave out a type named after its module followed by `Version` (`ElasticFlowVersion`),
so it is not checked here. Exits 1 and lists them (file:line kind name) when any is missing, 0
otherwise; the count goes to standard error.
"""
import json
import os
import sys


def main():
    args = sys.argv[1:]
    root = None
    if "--root" in args:
        i = args.index("--root")
        root = os.path.abspath(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    directory, module = args
    if not os.path.isdir(directory):
        sys.exit(f"undocumented.py: no symbol graph directory '{directory}' (build the documentation first)")
    missing, total, graphs = [], 0, 0
    for name in sorted(os.listdir(directory)):
        if not (name == f"{module}.symbols.json" or name.startswith(f"{module}@")):
            continue
        graphs += 1
        graph = json.load(open(os.path.join(directory, name)))
        for symbol in graph["symbols"]:
            if symbol.get("accessLevel") not in ("public", "open"):
                continue
            location = symbol.get("location")
            if not location:
                continue
            path = location["uri"].removeprefix("file://")
            if root and not os.path.abspath(path).startswith(root + os.sep):
                continue
            total += 1
            if symbol.get("docComment", {}).get("lines"):
                continue
            line = location["position"]["line"] + 1
            title = ".".join(symbol["pathComponents"])
            missing.append(f"{os.path.relpath(path)}:{line} {symbol['kind']['identifier'].removeprefix('swift.')} {title}")
    if graphs == 0:
        sys.exit(f"undocumented.py: no symbol graph of module {module} in '{directory}'")
    for entry in sorted(set(missing)):
        print(entry)
    print(f"{module}: {total - len(set(missing))} of {total} public declarations documented", file=sys.stderr)
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
