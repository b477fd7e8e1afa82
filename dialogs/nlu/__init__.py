"""Understanding short Chinese replies: built-in rules and Rasa over HTTP."""

from __future__ import annotations

from typing import Any, Protocol

from dialogs.nlu.builtin import BuiltinNlu
from dialogs.nlu.types import Expectation, Nlu, NluResult

__all__ = ["BuiltinNlu", "Expectation", "Nlu", "NluConfigLike", "NluResult", "make_nlu"]


class NluConfigLike(Protocol):
    """The fields of `outreach.config.NluConfig` this package reads (dialogs must not import outreach)."""

    @property
    def engine(self) -> str: ...

    @property
    def rasa_url(self) -> str: ...

    @property
    def rasa_token(self) -> Any: ...  # pydantic SecretStr | None

    @property
    def timeout_s(self) -> float: ...

    @property
    def low_confidence(self) -> float: ...


def make_nlu(config: NluConfigLike) -> Nlu:
    """The NLU the config (`outreach.config.NluConfig`) asks for: `builtin`, or `rasa` with the built-in
    NLU as its fallback."""
    builtin = BuiltinNlu(low_confidence=config.low_confidence)
    if config.engine == "builtin":
        return builtin
    if config.engine == "rasa":
        from dialogs.nlu.rasa import RasaNlu

        secret = config.rasa_token
        token = secret.get_secret_value() if secret is not None else None
        return RasaNlu(
            config.rasa_url,
            timeout_s=config.timeout_s,
            token=token or None,
            fallback=builtin,
            low_confidence=config.low_confidence,
        )
    raise ValueError(f"nlu.engine: unknown engine {config.engine!r}; expected builtin or rasa")
