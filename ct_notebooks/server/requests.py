"""Request bodies of the server API as pydantic models; every limit comes from :mod:`ct_notebooks.inputs`."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError
from ..inputs import MAX_BODY_BYTES, MAX_REASON_CHARS, MAX_VERSION, check_text, loads

Reason = Annotated[str, Field(max_length=MAX_REASON_CHARS, description="one line, no control characters"),
                   AfterValidator(lambda value: check_text(value, "reason"))]
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]


def parse_body(raw: bytes) -> Any:
    """The JSON of a request body (``{}`` when empty); :class:`InputError` says what is wrong."""
    if not raw:
        return {}
    if len(raw) > MAX_BODY_BYTES:
        raise InputError(f"the request body has {len(raw)} bytes; at most {MAX_BODY_BYTES}", field="body")
    try:
        return loads(raw, "the request body")
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        raise InputError("the request body must be JSON", field="body") from None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @classmethod
    def parse(cls, data: Any) -> Self:
        """Validate a decoded JSON body; :class:`InputError` names each field that is wrong."""
        if not isinstance(data, dict):
            raise InputError("the body must be a JSON object", field="body")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()[:3]]
            first = exc.errors()[0]["loc"] if exc.errors() else ()
            raise InputError("; ".join(problems), field=_where(first)) from None


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out[:120] or "body"


class StartRun(_Body):
    """``POST /runs``: start a pipeline in a detached process."""

    pipeline: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    reason: Reason = ""
    parameters: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="{stage: {name: JSON value}}; values checked as the CLI checks them")


class Promote(_Body):
    """``POST /models/promote``: make a version the champion."""

    version: Version
    reason: Reason = ""
    force: bool = Field(False, description="promote even a version the model gate rejected (audited as forced)")


class Rollback(_Body):
    """``POST /models/rollback``: move the champion back."""

    to_version: Version | None = None
    reason: Reason = ""
    force: bool = Field(False, description="roll back even to a version never champion nor blessed (audited as forced)")


class SignalEvent(_Body):
    """``POST /triggers/{rule}``: a system around CT signals an event rule."""

    reason: Reason = ""
