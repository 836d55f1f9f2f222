"""Errors the library raises; the CLI turns each into one clear line."""

from __future__ import annotations


class EmbedtagError(Exception):
    """Base class: the message is meant for the user, one line, saying what to do."""


class TagListError(EmbedtagError):
    """The tag list is unreadable or invalid."""


class GlossError(EmbedtagError):
    """A gloss file is unreadable or invalid."""


class ModelError(EmbedtagError):
    """The embedding model is missing or cannot be loaded."""


class IndexError_(EmbedtagError):
    """The index is missing, corrupt, stale or built for another model or tag list."""


class InputError(EmbedtagError):
    """A README or record cannot be used."""
