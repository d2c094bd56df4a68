"""docs/api.md's table of error codes is the set the server can answer with: every (status, code) pair written in
src/picseek/server (ApiError(...) calls, the error edge's answers and its status table, the guard middleware's
answers) is in the table, and the table names no code the server never returns."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "src" / "picseek" / "server"
ANSWERING = {"ApiError", "error_response", "_send_json"}  # calls that answer with (status, code, message)


def _int(node: ast.AST) -> int | None:
    return node.value if isinstance(node, ast.Constant) and type(node.value) is int else None


def _str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _pairs(tree: ast.AST) -> set[tuple[int, str]]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name in ANSWERING:
                args = node.args
                for a, b in zip(args, args[1:]):
                    if _int(a) is not None and _str(b) is not None:
                        found.add((_int(a), _str(b)))
                        break
        elif isinstance(node, ast.Tuple) and len(node.elts) == 2:  # picseek_status: (status, code)
            status, code = _int(node.elts[0]), _str(node.elts[1])
            if status is not None and 400 <= status < 600 and code is not None:
                found.add((status, code))
        elif isinstance(node, ast.Dict):  # the error edge's status -> code table
            keys, values = [_int(k) for k in node.keys if k], [_str(v) for v in node.values]
            if keys and all(k is not None and 400 <= k < 600 for k in keys) and all(values):
                found.update(zip(keys, values))
    return found


def server_codes() -> set[tuple[int, str]]:
    out = set()
    for path in SERVER.rglob("*.py"):
        out |= _pairs(ast.parse(path.read_text(encoding="utf-8")))
    return out


def documented_codes() -> set[tuple[int, str]]:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text[text.index("### Errors"):]
    section = section[:section.index("\n### ", 1)]
    out = set()
    for line in section.splitlines():
        m = re.match(r"\|\s*(\d{3})\s*\|([^|]*)\|", line)
        if m:
            out.update((int(m.group(1)), code) for code in re.findall(r"`([a-z_]+)`", m.group(2)))
    return out


def test_the_collector_finds_what_it_should():
    codes = server_codes()
    assert {(400, "path_in_query"), (400, "bad_host"), (400, "bad_filter"), (400, "bad_query"),
            (422, "invalid_parameters"), (500, "internal_error"), (404, "not_found")} <= codes


def test_docs_list_exactly_the_error_codes_the_server_returns():
    codes, documented = server_codes(), documented_codes()
    assert codes - documented == set(), "returned but not in docs/api.md's Errors table"
    assert documented - codes == set(), "in docs/api.md's Errors table but never returned"
