"""The bindings against the C library itself: version, constants, error codes and struct
layouts checked against elasticflow.h, and how the library is found."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import elasticflow
from elasticflow import _lib
from elasticflow.errors import ErrorCode
from conftest import REPO, tool

HEADER = (REPO / "CCore" / "include" / "elasticflow.h").read_text()


def header_macro(name: str) -> int:
    match = re.search(rf"^#define {name} (.+?)(?:\s*/\*.*)?$", HEADER, re.M)
    assert match, name
    return int(eval(match.group(1).replace("u", "")))  # plain integer expressions only


def test_versions_agree():
    version = ".".join(str(header_macro(f"EF_VERSION_{part}")) for part in ("MAJOR", "MINOR", "PATCH"))
    assert elasticflow.library_version() == version
    assert elasticflow.__version__ == version
    pyproject = (REPO / "python" / "pyproject.toml").read_text()
    assert f'version = "{version}"' in pyproject
    assert _lib.VERSION_MAJOR == header_macro("EF_VERSION_MAJOR")


def test_constants_match_the_header():
    for name, value in {
        "EF_COUNT_LOWERCASE": _lib.COUNT_LOWERCASE,
        "EF_COUNT_PARTITIONS_MAX": _lib.COUNT_PARTITIONS_MAX,
        "EF_CODEC_HEADER_SIZE": _lib.CODEC_HEADER_SIZE,
        "EF_FRAME_HEADER_SIZE": _lib.FRAME_HEADER_SIZE,
        "EF_FRAME_MAX_PAYLOAD_DEFAULT": _lib.FRAME_MAX_PAYLOAD_DEFAULT,
        "EF_PROTOCOL_VERSION": _lib.PROTOCOL_VERSION,
        "EF_FORMAT_MAGIC_SIZE": _lib.FORMAT_MAGIC_SIZE,
        "EF_FRAME_F_COMPRESSED": elasticflow.frame.FLAG_COMPRESSED,
    }.items():
        assert header_macro(name) == value, name
    enums = dict(re.findall(r"^\s+EF_(\w+) = (-?\d+),", HEADER, re.M))
    for code in ErrorCode:
        assert int(enums["E" + code.name if code.name != "OK" else "OK"]) == code.value, code
    assert {k for k in enums if re.fullmatch(r"E[A-Z]+", k)} == {"E" + c.name for c in ErrorCode if c.name != "OK"}
    for frame_type in elasticflow.FrameType:
        assert int(enums[f"FRAME_{frame_type.name}"]) == frame_type.value
    for name, value in elasticflow.CODECS.items():
        assert int(enums[f"CODEC_{name.upper()}"]) == value
    assert int(enums["FORMAT_PLAIN"]) == _lib.FORMAT_PLAIN


def test_every_error_code_has_its_message():
    for code in ErrorCode:
        assert _lib.strerror(code) not in ("", "unknown error")
    assert elasticflow.ElasticFlowError(-9999, "x").code == -9999


def test_struct_layouts_match_the_header(tmp_path):
    """A C program prints the sizes and offsets the compiler gives; ctypes must agree."""
    structs = {
        "ef_slice": _lib.Slice,
        "ef_word_count": _lib.WordCount,
        "ef_counter_options": _lib.CounterOptions,
        "ef_frame": _lib.FrameStruct,
        "struct iovec": _lib.IOVec,
    }
    lines = []
    for c_name, cls in structs.items():
        lines.append(f'printf("{c_name} size %zu\\n", sizeof({c_name}));')
        for field, _ in cls._fields_:
            lines.append(f'printf("{c_name} {field} %zu\\n", offsetof({c_name}, {field}));')
    source = tmp_path / "layout.c"
    source.write_text(
        "#include <elasticflow.h>\n#include <stddef.h>\n#include <stdio.h>\nint main(void) {\n"
        + "\n".join(lines)
        + "\nreturn 0;\n}\n"
    )
    exe = tmp_path / "layout"
    subprocess.run([tool("cc"), "-std=c11", f"-I{REPO / 'CCore' / 'include'}", str(source), "-o", str(exe)], check=True)
    printed = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    expected = []
    for c_name, cls in structs.items():
        expected.append(f"{c_name} size {ctypes.sizeof(cls)}")
        expected += [f"{c_name} {field} {getattr(cls, field).offset}" for field, _ in cls._fields_]
    assert printed == expected


def _import_in_child(env_changes, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "ELASTICFLOW_LIB"}
    env.update(env_changes)
    # The same elasticflow package as this process (installed, or the checkout's python/).
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(elasticflow.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    code = "import elasticflow, sys; print(elasticflow.library_path); print(elasticflow.library_found_by)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, check=False)


def test_elasticflow_lib_names_the_library():
    built = REPO / "build" / _lib.SONAME
    if not built.exists():
        pytest.skip("no build/ library (make lib)")
    for value in (str(built), str(built.parent)):
        done = _import_in_child({"ELASTICFLOW_LIB": value}, cwd="/")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("\n")[:2] == [str(built), "ELASTICFLOW_LIB"]


def test_a_wrong_elasticflow_lib_is_one_clear_error():
    done = _import_in_child({"ELASTICFLOW_LIB": "/nonexistent/libelasticflow.so.0"}, cwd="/")
    assert done.returncode != 0
    assert "ImportError: elasticflow: cannot load libelasticflow.so.0" in done.stderr
    assert "/nonexistent/libelasticflow.so.0 (ELASTICFLOW_LIB): no such file" in done.stderr


@pytest.mark.skipif(os.environ.get("ELASTICFLOW_EXPECT_INSTALLED") != "1", reason="make python-test checks this")
def test_the_installed_package_over_the_installed_library():
    """make python-test: the package is the pip-installed one, the library the one
    `make install` put in the temporary prefix, found through pkg-config."""
    assert REPO / "python" not in Path(elasticflow.__file__).resolve().parents
    assert elasticflow.library_found_by == "pkg-config"
    libdir = subprocess.run(
        ["pkg-config", "--variable=libdir", "elasticflow"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert elasticflow.library_path == os.path.join(libdir, _lib.SONAME)
