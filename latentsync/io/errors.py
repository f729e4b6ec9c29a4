"""The one error type of the media I/O layer."""

from __future__ import annotations


class MediaError(ValueError):
    """A media file cannot be read or written as asked; the message names the file and the fix."""
