"""One-line messages for workflow configs that fail the schema.

Imported by the Snakefile (not a ``script:`` of a rule). Snakemake's ``validate`` reports a
bad config with the whole failing schema attached — a misspelt top-level key prints the
1,100-line schema. :func:`validate_config` runs the same validation (defaults filled in) and
turns a failure into one line that names the key and what is allowed there, e.g.::

    config: unknown key 'trian' at the top level (allowed keys: baseline, evaluate, ...)
    config: train.epochs: -3 is less than the minimum of 1
"""

from __future__ import annotations

from typing import Any

from jsonschema.exceptions import ValidationError

#: Longest message kept from jsonschema (its messages quote the offending value in full).
_MAX_MESSAGE = 300


def _location(error: ValidationError) -> str:
    """``train.epochs``, ``scenes.tiny.simulate`` or ``""`` for the top level."""
    return ".".join(str(p) for p in error.absolute_path)


def config_error_line(error: ValidationError) -> str:
    """One line for a config that failed the schema.

    Args:
        error: The error jsonschema raised (Snakemake's ``validate`` raises the best match).

    Returns:
        ``config: unknown key 'k' in section (allowed keys: ...)`` for a key the schema does not
        know, else ``config: <where>: <jsonschema's message, first line, shortened>``.
    """
    where = _location(error)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed) or ["?"]
        keys = ", ".join(repr(k) for k in unknown)
        place = f"in {where}" if where else "at the top level"
        plural = "s" if len(unknown) > 1 else ""
        return f"config: unknown key{plural} {keys} {place} (allowed keys: {', '.join(allowed)})"
    message = (error.message.splitlines() or [""])[0]
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return f"config: {where or 'top level'}: {message}"


def find_validation_error(exc: BaseException) -> ValidationError | None:
    """The jsonschema error inside a Snakemake ``WorkflowError`` (its args or its cause)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        if isinstance(e, ValidationError):
            return e
        todo += [*e.args, e.__cause__, e.__context__]
    return None


def short_config_error(exc: BaseException) -> str:
    """The one-line message for a failed config validation (``exc`` from ``validate``)."""
    found = find_validation_error(exc)
    if found is not None:
        return config_error_line(found)
    return "config: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0]
