"""The one exception every config check raises."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid config: which key, on which line (when known), and why.

    ``str(err)`` is a single line, ``SOURCE:LINE: KEY: MESSAGE``, with the parts that are
    unknown left out, so it can be printed as-is by ``stratum-proxy check`` or logged by a
    reload that keeps the old config.
    """

    key: str
    """Dotted path of the offending key, e.g. ``pools[0].url``; ``""`` when not one key."""
    line: int | None
    """1-based line in the file where the key (or its table) is; ``None`` when unknown."""
    message: str
    """What is wrong, without the location."""
    source: str | None
    """The file name (or ``<config>``) the text came from; ``None`` for a Config built in code."""

    def __init__(
        self, message: str, *, key: str = "", line: int | None = None, source: str | None = None
    ) -> None:
        # One line whatever the underlying library said: the CLI and the logs rely on it.
        self.message = " ".join(message.split())
        self.key = key
        self.line = line
        self.source = source
        super().__init__(self.message)

    def __str__(self) -> str:
        location = self.source or ""
        if self.line is not None:
            location = f"{location}:{self.line}" if location else f"line {self.line}"
        parts = [p for p in (location, self.key, self.message) if p]
        return ": ".join(parts)

    def __repr__(self) -> str:
        return f"ConfigError({self.message!r}, key={self.key!r}, line={self.line!r}, source={self.source!r})"
