"""The ticket domain stands apart: bot/casework never imports the WeChat boundary, the
conversation, the HTTP layer or the everything-bag Services (it gets `Casework`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("bot.wechat", "bot.dialogs", "bot.services", "bot.sim", "bot.app", "aiohttp", "wechatpy")


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_casework_imports_no_boundary_module():
    found = {path.name: sorted(name for name in imports_of(path) if name.startswith(FORBIDDEN))
             for path in sorted((ROOT / "bot" / "casework").glob("*.py"))}
    assert len(found) >= 10
    assert {name: bad for name, bad in found.items() if bad} == {}


def test_the_check_sees_a_forbidden_import(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("from bot.wechat.outbox import OutboxSender\nimport aiohttp\n", encoding="utf-8")
    assert {name for name in imports_of(module) if name.startswith(FORBIDDEN)} == {"bot.wechat.outbox", "aiohttp"}
