"""What API answers show of server paths and secrets: known folders made relative, data never rewritten.

Data (parameters, reasons, column names, outputs) keeps every character: only the folders the server
knows (the project, the server root, the Python installation, the home folder) are shown relative, and
the server's token is hidden. Messages (errors, tracebacks' last lines) may also name files anywhere on
the server: there any other absolute path becomes ``<path>``. Displaying text safely is the client's
job (the sidebar and the dashboard escape everything they show).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: characters of a path segment, for telling ``/srv/app`` from ``/srv/application``
_SEGMENT = r"[\w.@+~-]"
#: an absolute path of two or more segments that starts a word (after a space, quote, bracket, = : or ,)
_OTHER_PATH = re.compile(rf"""(?<![^\s'"(\[=:,])/{_SEGMENT}+(?:/{_SEGMENT}+)+""")
MAX_MESSAGE_CHARS = 500


class Scrubber:
    """Replaces known server folders (and secrets) in API answers."""

    def __init__(self, folders: Iterable[tuple[Path | str, str]], secrets: Iterable[str] = ()) -> None:
        """``folders``: ``(absolute folder, label)``; ``""`` as label makes paths under it relative."""
        seen: dict[str, str] = {}
        for folder, label in folders:
            text = str(folder).rstrip(os.sep)
            if len(text) > 1 and text not in seen:
                seen[text] = label
        self._labels = seen
        self.secrets = [s for s in secrets if s]
        self._pattern = re.compile(
            rf"(?<!{_SEGMENT})(?<!/)(?P<folder>{'|'.join(re.escape(f) for f in sorted(seen, key=len, reverse=True))})"
            rf"(?:(?P<sep>/)|(?!{_SEGMENT}|/))"
        ) if seen else None

    @classmethod
    def for_server(cls, project_root: Path | None, server_root: Path, secrets: Iterable[str] = ()) -> Scrubber:
        """The folders of a running server: project and server root (relative), Python, home (``~``)."""
        folders: list[tuple[Path | str, str]] = []
        for root in (project_root, server_root):
            if root is not None:
                folders += [(root, ""), (Path(root).resolve(), "")]
        for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
            folders += [(prefix, "<python>"), (Path(prefix).resolve(), "<python>")]
        home = Path.home()
        folders += [(home, "~"), (home.resolve(), "~")]
        return cls(folders, secrets)

    def _replace(self, match: re.Match[str]) -> str:
        label = self._labels[match.group("folder")]
        if match.group("sep"):
            return f"{label}/" if label else ""
        return label or "."

    def text(self, value: str) -> str:
        """``value`` with known folders replaced and secrets hidden; nothing else changes."""
        if self._pattern is not None and "/" in value:
            value = self._pattern.sub(self._replace, value)
        for secret in self.secrets:
            value = value.replace(secret, "<hidden>")
        return value

    def data(self, value: Any) -> Any:
        """:meth:`text` applied to every string of a JSON-like value (keys too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def message(self, value: str) -> str:
        """An error message fit for a client: :meth:`text`, other absolute paths hidden, at most 500 characters."""
        value = _OTHER_PATH.sub("<path>", self.text(value))
        return value if len(value) <= MAX_MESSAGE_CHARS else value[: MAX_MESSAGE_CHARS - 3] + "..."
