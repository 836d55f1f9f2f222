"""embedtag: an offline tagger for software projects.

Nothing heavy is imported here, so `embedtag --help` stays fast; import from the submodules
or use the names below (resolved lazily).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Document", "TagResult", "Tagger", "__version__", "load_index", "load_tags"]


def __getattr__(name: str) -> Any:
    if name in {"Tagger", "Document", "TagResult"}:
        from embedtag import tagger

        return getattr(tagger, name)
    if name == "load_index":
        from embedtag.index import load_index

        return load_index
    if name == "load_tags":
        from embedtag.tags import load_tags

        return load_tags
    raise AttributeError(name)
