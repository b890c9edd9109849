"""The package's imports point one way: interfaces (server, client, cli) -> engine -> the
engine's parts -> stores -> the foundation, and no module imports itself back through others.

docs/architecture.md ("Layers") draws the result. The graph is read from the source files
(grimp), imports inside functions and under ``TYPE_CHECKING`` included: a lazy import that
closes a circle is still a circle.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# Modules every layer may use: no riverbed imports of their own but each other.
FOUNDATION = {
    "riverbed.exceptions",
    "riverbed.validation",
    "riverbed.config",
    "riverbed.version",
    "riverbed.receipts",
    "riverbed.serialization",
    "riverbed.specs",
    "riverbed.artifacts",
    "riverbed.provenance",
    "riverbed.search",
}
INTERFACE, ENGINE, PART, STORE, BASE = 4, 3, 2, 1, 0
LAYER_NAMES = {INTERFACE: "interface", ENGINE: "engine", PART: "engine part", STORE: "store"}
LAYER_NAMES[BASE] = "foundation"


def _under(module: str, *prefixes: str) -> bool:
    # a package and its modules: riverbed.cli is riverbed/cli/, riverbed.client riverbed/client/
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer(module: str) -> int:
    if module in ("riverbed", "riverbed.__main__") or _under(
        module,
        "riverbed.cli",
        "riverbed.client",
        "riverbed.server",
        "riverbed.beaver",
        "riverbed.scaleout",
    ):
        return INTERFACE
    if module == "riverbed.engine":
        return ENGINE
    if _under(module, "riverbed.stores"):
        return STORE
    if module in FOUNDATION:
        return BASE
    return PART


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(SRC))  # this checkout's source, whatever the venv points at
    try:
        return grimp.build_graph(
            "riverbed",
            include_external_packages=False,
            exclude_type_checking_imports=False,
            cache_dir=None,
        )
    finally:
        sys.path.remove(str(SRC))


def _edges(graph: grimp.ImportGraph) -> list[tuple[str, str, int]]:
    out = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            details = graph.get_import_details(importer=importer, imported=imported)
            line = details[0]["line_number"] if details else 0
            out.append((importer, imported, line))
    return out


def test_the_graph_is_read_from_this_checkout(graph: grimp.ImportGraph) -> None:
    assert "riverbed.engine" in graph.modules and "riverbed.server.app" in graph.modules
    assert graph.direct_import_exists(importer="riverbed.engine", imported="riverbed.stores")


def test_no_import_circles(graph: grimp.ImportGraph) -> None:
    circles = []
    for importer, imported, line in _edges(graph):
        if importer == imported or imported in ("riverbed",):
            continue
        if graph.chain_exists(importer=imported, imported=importer):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            circles.append(f"{importer} (line {line}) -> {' -> '.join(back or ())}")
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_imports_point_down_the_layers(graph: grimp.ImportGraph) -> None:
    upward = []
    for importer, imported, line in _edges(graph):
        if imported == "riverbed" and importer.startswith("riverbed."):
            # the package root imports the engine and the client: from inside, name the
            # module that holds the thing instead (riverbed.version, riverbed.exceptions)
            upward.append(f"{importer}:{line} imports the package root")
            continue
        a, b = layer(importer), layer(imported)
        if b > a:
            upward.append(
                f"{importer}:{line} ({LAYER_NAMES[a]}) imports {imported} ({LAYER_NAMES[b]})"
            )
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def _reaches(graph: grimp.ImportGraph, sources: str, targets: tuple[str, ...]) -> list[str]:
    found = []
    for module in sorted(m for m in graph.modules if _under(m, sources)):
        for target in sorted(m for m in graph.modules if _under(m, *targets)):
            if graph.chain_exists(importer=module, imported=target):
                chain = graph.find_shortest_chain(importer=module, imported=target)
                found.append(" -> ".join(chain or ()))
    return found


def test_the_client_speaks_http_only(graph: grimp.ImportGraph) -> None:
    """The client never loads the engine, the stores or the server: a client machine needs
    neither river's models nor Starlette to run it."""
    targets = ("riverbed.engine", "riverbed.server", "riverbed.stores", "riverbed.live")
    assert not _reaches(graph, "riverbed.client", targets)


def test_the_server_does_not_use_the_other_interfaces(graph: grimp.ImportGraph) -> None:
    assert not _reaches(graph, "riverbed.server", ("riverbed.cli", "riverbed.client"))
