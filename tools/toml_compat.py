"""Read TOML on any supported Python: ``tomllib`` (3.11+), ``tomli``, or a fallback.

The fallback, :func:`parse_minimal_toml`, is a small reader for well-formed
project files (tables, dotted and quoted keys, strings, arrays, inline
tables, booleans, numbers), so the repository tools stay standard-library
only on Python 3.9 and 3.10.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Sequence


def load_toml(path: Path) -> Dict[str, Any]:
    """Parse the TOML file at *path* into a dict.

    Uses ``tomllib`` (3.11+) or ``tomli`` when importable, else
    :func:`parse_minimal_toml`.  Raises ``ValueError`` on a syntax error.
    """
    text = path.read_text(encoding="utf-8")
    parser = _toml_library()
    if parser is None:
        return parse_minimal_toml(text)
    try:
        return parser.loads(text)
    except parser.TOMLDecodeError as exc:  # type: ignore[attr-defined]
        raise ValueError(str(exc)) from exc


def _toml_library() -> Any | None:
    """Return ``tomllib`` or ``tomli`` if one is importable, else ``None``."""
    try:
        import tomllib  # type: ignore[import-not-found]

        return tomllib
    except ImportError:
        pass
    try:
        import tomli  # type: ignore[import-not-found]

        return tomli
    except ImportError:
        return None


class _MiniToml:
    """A small recursive-descent TOML reader (fallback for Python < 3.11).

    It understands tables, dotted and quoted keys, basic and literal strings
    (single- and multi-line), arrays, inline tables, booleans and numbers.
    Dates and other scalars are kept as their raw text.  Arrays of tables
    (``[[x]]``) are collected as lists of dicts.  It does not validate
    everything TOML forbids; it only has to read well-formed project files.
    """

    _ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
    _BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
    _SCALAR = re.compile(r"[^\s,\]}#]+")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> ValueError:
        line = self.text.count("\n", 0, self.pos) + 1
        return ValueError(f"TOML parse error at line {line}: {message}")

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def skip_space(self, newlines: bool = False) -> None:
        """Skip blanks and comments; also newlines when *newlines* is true."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t" or (newlines and ch in "\r\n"):
                self.pos += 1
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def parse(self) -> Dict[str, Any]:
        root: Dict[str, Any] = {}
        current = root
        while True:
            self.skip_space(newlines=True)
            if self.pos >= len(self.text):
                return root
            if self.peek(2) == "[[":
                self.pos += 2
                keys = self.parse_key()
                self.expect("]]")
                parent = self.descend(root, keys[:-1])
                current = {}
                parent.setdefault(keys[-1], []).append(current)
            elif self.peek() == "[":
                self.pos += 1
                keys = self.parse_key()
                self.expect("]")
                current = self.descend(root, keys)
            else:
                self.parse_key_value(current)
            self.end_of_line()

    def end_of_line(self) -> None:
        self.skip_space()
        if self.pos < len(self.text) and self.text[self.pos] not in "\r\n":
            raise self.error("expected end of line")

    def expect(self, token: str) -> None:
        self.skip_space()
        if self.peek(len(token)) != token:
            raise self.error(f"expected {token!r}")
        self.pos += len(token)

    @staticmethod
    def descend(table: Dict[str, Any], keys: Sequence[str]) -> Dict[str, Any]:
        for key in keys:
            nxt = table.setdefault(key, {})
            if isinstance(nxt, list):  # an array of tables: extend its last one
                nxt = nxt[-1]
            table = nxt
        return table

    def parse_key(self) -> List[str]:
        keys = []
        while True:
            self.skip_space()
            ch = self.peek()
            if ch == '"':
                keys.append(self.parse_basic_string())
            elif ch == "'":
                keys.append(self.parse_literal_string())
            else:
                match = self._BARE_KEY.match(self.text, self.pos)
                if not match:
                    raise self.error("expected a key")
                keys.append(match.group())
                self.pos = match.end()
            self.skip_space()
            if self.peek() != ".":
                return keys
            self.pos += 1

    def parse_key_value(self, table: Dict[str, Any]) -> None:
        keys = self.parse_key()
        self.expect("=")
        self.skip_space()
        self.descend(table, keys[:-1])[keys[-1]] = self.parse_value()

    def parse_value(self) -> Any:
        ch = self.peek()
        if ch == '"':
            return self.parse_basic_string()
        if ch == "'":
            return self.parse_literal_string()
        if ch == "[":
            return self.parse_array()
        if ch == "{":
            return self.parse_inline_table()
        return self.parse_scalar()

    def parse_basic_string(self) -> str:
        multi = self.peek(3) == '"""'
        self.pos += 3 if multi else 1
        if multi and self.peek() == "\n":
            self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.error("unterminated string")
            if multi and self.peek(3) == '"""':
                self.pos += 3
                return "".join(out)
            ch = self.text[self.pos]
            if not multi and ch == '"':
                self.pos += 1
                return "".join(out)
            if not multi and ch == "\n":
                raise self.error("newline in string")
            if ch == "\\":
                out.append(self.parse_escape(multi))
                continue
            out.append(ch)
            self.pos += 1

    def parse_escape(self, multi: bool) -> str:
        code = self.text[self.pos + 1 : self.pos + 2]
        if code in self._ESCAPES:
            self.pos += 2
            return self._ESCAPES[code]
        if code in ("u", "U"):
            width = 4 if code == "u" else 8
            digits = self.text[self.pos + 2 : self.pos + 2 + width]
            self.pos += 2 + width
            return chr(int(digits, 16))
        if multi and code in ("\n", " ", "\t", "\r"):
            # line-ending backslash: trim the newline and following blanks
            self.pos += 1
            while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
                self.pos += 1
            return ""
        raise self.error(f"invalid escape \\{code}")

    def parse_literal_string(self) -> str:
        delim = "'''" if self.peek(3) == "'''" else "'"
        self.pos += len(delim)
        if delim == "'''" and self.peek() == "\n":
            self.pos += 1
        end = self.text.find(delim, self.pos)
        if end < 0:
            raise self.error("unterminated string")
        value = self.text[self.pos : end]
        self.pos = end + len(delim)
        return value

    def parse_array(self) -> List[Any]:
        self.pos += 1
        items: list[Any] = []
        while True:
            self.skip_space(newlines=True)
            if self.peek() == "]":
                self.pos += 1
                return items
            items.append(self.parse_value())
            self.skip_space(newlines=True)
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                raise self.error("expected ',' or ']' in array")

    def parse_inline_table(self) -> Dict[str, Any]:
        self.pos += 1
        table: Dict[str, Any] = {}
        while True:
            self.skip_space(newlines=True)
            if self.peek() == "}":
                self.pos += 1
                return table
            self.parse_key_value(table)
            self.skip_space(newlines=True)
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                raise self.error("expected ',' or '}' in inline table")

    def parse_scalar(self) -> Any:
        match = self._SCALAR.match(self.text, self.pos)
        if not match:
            raise self.error("expected a value")
        self.pos = match.end()
        raw = match.group()
        if raw in ("true", "false"):
            return raw == "true"
        for convert in (lambda s: int(s.replace("_", ""), 0), lambda s: float(s.replace("_", ""))):
            try:
                return convert(raw)
            except ValueError:
                pass
        return raw  # dates, times, inf/nan spellings: kept verbatim


def parse_minimal_toml(text: str) -> Dict[str, Any]:
    """Parse TOML *text* with the built-in fallback reader.

    Raises ``ValueError`` (with a line number) on input it cannot read.
    """
    return _MiniToml(text).parse()
