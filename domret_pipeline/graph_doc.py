"""The README's asset graph, generated from the assets of the Definitions so it cannot drift.

``python -m domret_pipeline.graph_doc README.md`` rewrites the README's ``mermaid`` block;
a test fails when that block differs from what the assets declare.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BLOCK = re.compile(r"```mermaid\n.*?```", re.DOTALL)


def mermaid_graph(assets) -> str:
    """A Mermaid flowchart of ``assets``: one edge per dependency, child by child in the order
    given. A dashed edge is a dependency the child waits for without reading it (a Nothing input,
    such as ``bm25_index`` waiting for ``labeled_queries`` and its blocking checks)."""
    order = {a.key: i for i, a in enumerate(assets)}
    lines = ["graph LR"]
    for asset in assets:
        waits_only = {i.name for i in asset.op.input_defs if i.dagster_type.is_nothing}
        edges = sorted(asset.keys_by_input_name.items(), key=lambda item: order.get(item[1], len(order)))
        for input_name, parent in edges:
            arrow = "-.->" if input_name in waits_only else "-->"
            lines.append(f"  {parent.to_user_string()} {arrow} {asset.key.to_user_string()}")
    return "```mermaid\n" + "\n".join(lines) + "\n```"


def readme_graph(readme_text: str) -> str | None:
    """The README's first ``mermaid`` block, fences included, or None."""
    match = BLOCK.search(readme_text)
    return match.group(0) if match else None


def main(argv: list[str]) -> int:
    from .definitions import ASSETS

    path = Path(argv[0] if argv else "README.md")
    text = path.read_text(encoding="utf-8")
    if readme_graph(text) is None:
        print(f"{path}: no ```mermaid block to replace", file=sys.stderr)
        return 1
    path.write_text(BLOCK.sub(lambda _: mermaid_graph(ASSETS), text, count=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
