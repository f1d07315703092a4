"""No import runs back up the layers (docs/DESIGN.md): read from the sources, nothing run.

codec/ never imports server/, training/ or benchmarks/ (the call's commands join the
``talkcodec`` command through an entry point, codec/cli.py); the receiver and the metrics
never import each other (what they share, dlib and the shipped-model loader, is below both:
codec/_dlib.py, codec/models.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Imports known to run the wrong way, each with the reason it is still there.
KNOWN: set[tuple[str, str]] = set()  # (file, module) exceptions: none now


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _violations(folder: str, forbidden: tuple[str, ...]) -> list[tuple[str, str]]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name in _imports(path):
            if name.split(".")[0] in forbidden or name.startswith(forbidden):
                if (rel, name) not in KNOWN:
                    bad.append((rel, name))
    return bad


def test_codec_imports_no_upper_layer() -> None:
    assert _violations("codec", ("server", "training", "benchmarks", "tests")) == []


def test_receiver_and_metrics_do_not_import_each_other() -> None:
    assert _violations("codec/receiver", ("codec.metrics",)) == []
    assert _violations("codec/metrics", ("codec.receiver", "codec.sender")) == []


def test_sender_imports_neither_receiver_nor_metrics() -> None:
    assert _violations("codec/sender", ("codec.receiver", "codec.metrics")) == []


def test_server_commands_join_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    from codec.cli import COMMANDS_GROUP, build_parser

    assert {e.value for e in entry_points(group=COMMANDS_GROUP)} == {"server.cli:add_subcommands"}
    parser = build_parser()
    commands = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    assert {"encode", "decode", "info", "send", "demo", "serve"} <= set(commands.choices)
