"""Use cases shared by the CLI (`outreach ...`) and the web console: import, campaign lifecycle, exports,
escalation actions, accounts. Each raises `ServiceError` with a message for the terminal (English, as the
CLI prints it) and one for web pages (Simplified Chinese)."""

from __future__ import annotations


class ServiceError(ValueError):
    """A use case cannot be carried out. `str(exc)`: the CLI's message; `zh`: the web page's; `code`: the
    CLI's exit status (2 unusable input, 1 the store or a file failed)."""

    def __init__(self, message: str, *, zh: str | None = None, code: int = 2) -> None:
        super().__init__(message)
        self.zh = zh or f"操作未完成：{message}"
        self.code = code
