#!/usr/bin/env python3
"""Type-checks the Swift code blocks of a DocC catalog's articles against the built module, or
keeps the README's runnable blocks and the program made of them the same.

    scripts/check_snippets.py CATALOG BIN_PATH
    scripts/check_snippets.py --readme README.md PROGRAM [--check]

--readme: every ```swift block of README.md right after a `<!-- snippet: run -->` line, in
order, is one program (top-level code; blocks see each other's declarations). It is written to
PROGRAM (Tests/ReadmeSnippets/main.swift, an executable target the tests run), each block under
a comment giving its number. With --check nothing is written: exits 1, saying which block
differs, when PROGRAM is not what README.md gives (run without --check to update it).

BIN_PATH is `swift build --show-bin-path` after the module was built (`make docs` builds it
through the documentation plugin first). Each ```swift block becomes the body of a function of
its own (or, when it declares `@main`, a file of its own), after a preamble that declares the few
values the guides take as given: `configuration`, `master`, `myTasks`, `lineCount` and `longest`.
All of them are type-checked in one `swiftc -typecheck` run, in Swift 6 mode; warnings about
values a snippet leaves unused are expected and ignored. Exits 1 with the compiler's errors
(naming the article and the line in it) when a snippet no longer compiles, 0 otherwise.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

PREAMBLE = """import ElasticFlow

let configuration = ClusterConfiguration(workers: [], cookie: try! Cookie("snippet"))
let master = Master(configuration: configuration)
let myTasks = TaskRegistry.standard
let lineCount = FlowTask(Flow.lines.count())
let longest = FlowTask(Flow.lines.count())
"""


MARK = "<!-- snippet: run -->"
HEADER = "// Generated from README.md by scripts/check_snippets.py --readme: edit README.md, not this file.\n"


def readme_program(readme):
    """The program README.md's marked blocks make, and how many there are."""
    text = open(readme).read()
    parts, count = [HEADER], 0
    for match in re.finditer(r"^" + re.escape(MARK) + r"\n```swift\n(.*?)```", text, re.S | re.M):
        count += 1
        # The block's number, not its line: prose edited above a block is no drift.
        parts.append(f"\n// README.md, runnable block {count}\n" + match.group(1))
    return "".join(parts), count


def readme_main(arguments):
    check = "--check" in arguments
    paths = [argument for argument in arguments if argument != "--check"]
    if len(paths) != 2:
        sys.exit(__doc__.strip().splitlines()[4].strip())
    readme, program = paths
    expected, count = readme_program(readme)
    if count == 0:
        sys.exit(f"check_snippets.py: no block marked '{MARK}' in {readme}")
    if not check:
        open(program, "w").write(expected)
        print(f"{program}: {count} blocks from {readme}", file=sys.stderr)
        return
    actual = open(program).read() if os.path.exists(program) else ""
    if actual != expected:
        import difflib
        diff = difflib.unified_diff(actual.splitlines(), expected.splitlines(), program, readme, lineterm="", n=1)
        print("\n".join(list(diff)[:40]), file=sys.stderr)
        sys.exit(f"{program} differs from the runnable blocks of {readme}: "
                 f"run scripts/check_snippets.py --readme {readme} {program}")
    print(f"{program}: the {count} runnable blocks of {readme}", file=sys.stderr)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--readme":
        return readme_main(sys.argv[2:])
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    catalog, bin_path = sys.argv[1:]
    swiftc = os.environ.get("SWIFTC") or os.path.join(os.path.dirname(os.environ.get("SWIFT", "swift")), "swiftc")
    if not os.path.exists(swiftc):
        swiftc = "swiftc"
    if not os.path.isdir(catalog):
        sys.exit(f"check_snippets.py: no catalog '{catalog}'")
    if not os.path.isdir(os.path.join(bin_path, "Modules")):
        sys.exit(f"check_snippets.py: no built modules in '{bin_path}' (build the documentation first)")
    work = tempfile.mkdtemp(prefix="docc-snippets-")
    files, count = [], 0
    body = [PREAMBLE]
    imports = set()
    for name in sorted(os.listdir(catalog)):
        if not name.endswith(".md"):
            continue
        text = open(os.path.join(catalog, name)).read()
        for match in re.finditer(r"```swift\n(.*?)```", text, re.S):
            count += 1
            first = text.count("\n", 0, match.start()) + 2
            snippet = match.group(1)
            tag = f"{name}:{first}"
            if "@main" in snippet:
                path = os.path.join(work, f"main_{count}.swift")
                open(path, "w").write(f"// {tag}\n" + snippet)
                files.append(path)
                continue
            # Imports cannot stand in a function: they go to the top of the file.
            imports.update(line.strip() for line in snippet.splitlines() if line.startswith("import "))
            lines = [line for line in snippet.splitlines() if not line.startswith("import ")]
            body.append(f"// {tag}\nfunc snippet{count}() async throws {{\n" + "\n".join(lines) + "\n}\n")
    if count == 0:
        shutil.rmtree(work)
        sys.exit(f"check_snippets.py: no Swift snippet in '{catalog}'")
    shared = os.path.join(work, "snippets.swift")
    open(shared, "w").write("\n".join(sorted(imports - {"import ElasticFlow"}) + body))
    module_map = os.path.join(bin_path, "CElasticFlow.build", "module.modulemap")
    flags = ["-typecheck", "-parse-as-library", "-swift-version", "6", "-I", os.path.join(bin_path, "Modules"),
             "-Xcc", f"-fmodule-map-file={module_map}"]
    # The shared file in one run; each @main file in a run of its own (one @main per module).
    failures = []
    for paths in [[shared]] + [[path] for path in files]:
        result = subprocess.run([swiftc] + flags + paths, capture_output=True, text=True)
        if result.returncode:
            failures.append(result)
    if failures:
        for failure in failures:
            print(failure.stderr.strip(), file=sys.stderr)
        print(f"{catalog}: a Swift snippet does not compile (sources in {work})", file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(work)
    print(f"{catalog}: {count} Swift snippets type-check", file=sys.stderr)


if __name__ == "__main__":
    main()
