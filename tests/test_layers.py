"""The layers import only the layers above them (docs/architecture.md, "Layers")."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("domain", "sources", "warehouse", "pipelines")
ENGINES = ("pipelines/ingest", "pipelines/state", "pipelines/rating", "pipelines/invoicing", "pipelines/revenue",
           "pipelines/ledger", "pipelines/receivables", "pipelines/documents")
# layer -> the packages (or engine packages) it may import
ALLOWED = {
    "domain": {"domain"},
    "sources": {"domain", "sources"},
    "warehouse": {"domain", "sources", "warehouse"},
    **{engine: {"domain", "sources", "warehouse", engine.replace("/", ".")} | {e.replace("/", ".") for e in ENGINES}
       for engine in ENGINES},
}


def imports(path: Path) -> set[str]:
    """The modules of ours a file imports: ``pipelines.rating`` for ``from pipelines.rating.x import y``."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            parts = name.split(".")
            if parts[0] in OURS:
                out.add(".".join(parts[:2]) if parts[0] == "pipelines" and len(parts) > 1 else parts[0])
    return out


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_above_it(layer):
    allowed = ALLOWED[layer]
    wrong = {}
    for path in sorted((ROOT / layer).rglob("*.py")):
        used = {m if m.split(".")[0] != "pipelines" else m for m in imports(path)}
        bad = {m for m in used if m not in allowed and m.split(".")[0] not in allowed}
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert wrong == {}, f"{layer} may import only {sorted(allowed)}"
