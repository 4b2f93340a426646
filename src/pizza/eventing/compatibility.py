"""Is a message schema change safe for its consumers? A pure comparison of two JSON Schemas.

``check(old, new, mode)`` lists what breaks; an empty list means compatible. The modes are
Confluent Schema Registry's, phrased as a writer schema W and a reader schema R, where R can
read W's data iff every document valid for W is valid for R:

* ``BACKWARD`` (default): W = old, R = new. Consumers on the new schema read old data.
* ``FORWARD``: W = new, R = old. Consumers still on the old schema read new data.
* ``FULL``: both.

Two deliberate choices for our pydantic messages (``extra="ignore"``, no
``additionalProperties``), which JSON Schema calls an *open content model*:

1. **Writers emit only declared fields** (``model_dump`` never adds any), and readers ignore
   the others. Confluent assumes an open writer may have put anything under any name, so
   *adding an optional property* to an open schema is backward incompatible there. For us it
   is safe: no old message carries the new name. So a property only R declares is fine if
   optional (or has a default); one R requires and W may lack breaks R.
2. **A published field is never removed** (``forbid_removal=True``, the default in every
   mode). A reader ignores a field it no longer declares, so pure reader/writer reasoning
   lets BACKWARD drop fields; but consumers of the published version (other services,
   replays of old data) may depend on it. With this rule BACKWARD equals Confluent's
   BACKWARD for a *closed* content model: adding an optional field is compatible; removing a
   field, changing a type, adding a required field without a default, making an optional
   field required and narrowing an enum or a constraint break. ``forbid_removal=False``
   gives the pure open-model semantics (removal breaks only where a reader requires it).

Types: R must accept every value W allows. integer -> number widens (fine for a number
reader), number -> integer narrows. ``anyOf``/``oneOf``/type lists are unions: each W branch
must fit some R branch (so dropping ``null`` from an Optional breaks). ``$ref`` is resolved in
each schema's own ``$defs``. Bounds (minimum, maxLength, minItems, ...), ``pattern``,
``format`` and ``multipleOf`` may only be relaxed on R's side. Rule codes name the change
from old to new, so the same change reads the same in every mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]
MODES = ("BACKWARD", "FORWARD", "FULL")
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string",
               type(None): "null", list: "array", dict: "object"}
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_EXACT = ("pattern", "format")
_PUBLISHED = "a published field is never removed: consumers of the old version may use it"


@dataclass(frozen=True)
class Incompatibility:
    path: str  # e.g. "orderValue", "items[].quantity"; "" is the message itself
    rule: str  # field-removed, type-changed, required-field-added, enum-narrowed, ...
    message: str


def check(old: Schema, new: Schema, mode: str = "BACKWARD", *,
          forbid_removal: bool = True) -> list[Incompatibility]:
    """What breaks consumers when ``old`` (the published snapshot) becomes ``new``."""
    mode = mode.upper()
    if mode not in MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}; use one of {MODES}")
    passes = []
    if mode in ("BACKWARD", "FULL"):
        passes.append(_Pass(writer=old, reader=new, reader_is_new=True,
                            forbid_removal=forbid_removal))
    if mode in ("FORWARD", "FULL"):
        passes.append(_Pass(writer=new, reader=old, reader_is_new=False,
                            forbid_removal=forbid_removal))
    found: dict[tuple[str, str], Incompatibility] = {}
    for p in passes:
        for issue in p.compare(p.writer, p.reader, ""):
            found.setdefault((issue.path, issue.rule), issue)
    return list(found.values())


@dataclass
class _Pass:
    """One reader/writer direction; ``w``/``r`` below are sub-schemas of writer/reader."""

    writer: Schema
    reader: Schema
    reader_is_new: bool
    forbid_removal: bool = True
    seen: set[tuple[str, str]] = field(default_factory=set)

    def issue(self, path: str, rule: str, text: str, why: str = "") -> Incompatibility:
        why = why or ("consumers of the new schema cannot read old data" if self.reader_is_new
                      else "consumers of the old schema cannot read new data")
        return Incompatibility(path, rule, f"{path or 'the message'}: {text} ({why})")

    def old_new(self, w: Any, r: Any) -> tuple[Any, Any]:
        return (r, w) if not self.reader_is_new else (w, r)

    def compare(self, w: Schema, r: Schema, path: str) -> list[Incompatibility]:
        """Why R does not accept everything W allows at ``path`` (empty if it does)."""
        key = (w.get("$ref", ""), r.get("$ref", ""))
        if key[0] and key[1]:
            if key in self.seen:  # a recursive model: this pair is already being compared
                return []
            self.seen.add(key)
        try:
            return self.compare_unions(w, r, path)
        finally:
            self.seen.discard(key)

    def compare_unions(self, w: Schema, r: Schema, path: str) -> list[Incompatibility]:
        w_branches = list(_branches(w, self.writer))
        r_branches = list(_branches(r, self.reader))
        if any(_is_any(rb) for rb in r_branches):
            return []
        issues: list[Incompatibility] = []
        for wb in w_branches:  # each writer alternative must fit some reader alternative
            candidates = [rb for rb in r_branches if _kind_fits(wb, rb)]
            if not candidates:
                old, new = self.old_new(_describe(w_branches), _describe(r_branches))
                return [self.issue(path, "type-changed", f"type changed from {old} to {new}")]
            tries = [self.compare_branch(wb, rb, path) for rb in candidates]
            if all(tries):
                issues.extend(tries[0])
        return issues

    def compare_branch(self, w: Schema, r: Schema, path: str) -> list[Incompatibility]:
        w_values, r_values = _values(w), _values(r)
        if r_values is not None:
            narrowed = "enum-narrowed" if self.reader_is_new else "enum-widened"
            if w_values is None:
                old, new = self.old_new(f"any {_type(w)}", _literals(r_values))
                return [self.issue(path, narrowed, f"allowed values changed from {old} to {new}")]
            extra = [v for v in w_values if v not in r_values]
            if extra:
                old, new = self.old_new(_literals(w_values), _literals(r_values))
                reader = "new" if self.reader_is_new else "old"
                return [self.issue(path, narrowed, f"allowed values changed from {old} to "
                                   f"{new}; the {reader} schema rejects {_literals(extra)}")]
        if w_values is not None:  # every constant must fit R's type (its kind fits already)
            return []
        issues = list(self.compare_constraints(w, r, path))
        if _type(r) == "object":
            issues += self.compare_objects(w, r, path)
        if _type(r) == "array" and "items" in r:
            issues += self.compare(w.get("items", {}), r["items"], f"{path}[]")
        return issues

    def compare_constraints(self, w: Schema, r: Schema, path: str) -> Iterator[Incompatibility]:
        rule = "constraint-narrowed" if self.reader_is_new else "constraint-relaxed"
        for name in (*_LOWER, *_UPPER, *_EXACT, "multipleOf", "uniqueItems"):
            if name not in r or r[name] is False:
                continue
            wv, rv = w.get(name), r[name]
            if wv is None:
                ok = False
            elif name in _LOWER:
                ok = wv >= rv
            elif name in _UPPER:
                ok = wv <= rv
            elif name == "multipleOf":
                ok = (wv / rv).is_integer()
            else:
                ok = wv == rv
            if not ok:
                old, new = self.old_new("none" if wv is None else repr(wv), repr(rv))
                yield self.issue(path, rule, f"{name} changed from {old} to {new}")

    def compare_objects(self, w: Schema, r: Schema, path: str) -> list[Incompatibility]:
        w_props, r_props = w.get("properties", {}), r.get("properties", {})
        w_req, r_req = set(w.get("required", ())), set(r.get("required", ()))
        issues: list[Incompatibility] = []
        closed = r.get("additionalProperties") is False
        for name in sorted(set(w_props) | set(r_props) | w_req | r_req):
            sub = f"{path}.{name}" if path else name
            in_w, in_r = name in w_props or name in w_req, name in r_props or name in r_req
            needed = name in r_req and name not in w_req and not _has_default(r_props, name)
            if in_w and in_r:
                if needed:
                    issues.append(self.issue(sub, *(
                        ("field-made-required", "was optional and is now required")
                        if self.reader_is_new else
                        ("field-made-optional", "was required and is now optional, but old "
                         "consumers require it"))))
                issues += self.compare(w_props.get(name, {}), r_props.get(name, {}), sub)
            elif in_r:  # only the reader declares it
                described = _describe(list(_branches(r_props.get(name, {}), self.reader)))
                if needed and self.reader_is_new:
                    issues.append(self.issue(sub, "required-field-added", f"was added as "
                                             f"required ({described}) without a default"))
                elif needed:
                    issues.append(self.issue(sub, "field-removed", f"was removed; the old "
                                             f"schema requires it as {described}"))
                elif self.forbid_removal and not self.reader_is_new:
                    issues.append(self.issue(sub, "field-removed", f"was removed; the old "
                                             f"schema had it as {described}", _PUBLISHED))
            elif self.reader_is_new and (self.forbid_removal or closed):
                described = _describe(list(_branches(w_props.get(name, {}), self.writer)))
                issues.append(self.issue(sub, "field-removed", f"was removed; the old schema "
                                         f"had it as {described}", "" if closed else _PUBLISHED))
            elif closed:
                issues.append(self.issue(sub, "field-added-to-closed-model",
                                         "was added, but the old schema forbids extra fields"))
        w_extra, r_extra = w.get("additionalProperties"), r.get("additionalProperties")
        if isinstance(r_extra, dict):  # a dict[str, X]: every W value must be an R value
            w_extra = w_extra if isinstance(w_extra, dict) else {}
            issues += self.compare(w_extra, r_extra, f"{path}{{}}")
        return issues


def _resolve(schema: Schema, root: Schema) -> Schema:
    """``schema`` with its ``$ref`` (and a lone ``allOf``) replaced by the target's keywords."""
    if len(schema.get("allOf", ())) == 1:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        schema = {**schema["allOf"][0], **rest}
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return schema
    target: Any = root
    for part in ref[1:].split("/")[1:]:
        target = target[part.replace("~1", "/").replace("~0", "~")]
    rest = {k: v for k, v in schema.items() if k != "$ref"}
    return {**_resolve(target, root), **rest}


def _branches(schema: Schema, root: Schema) -> Iterator[Schema]:
    """The alternatives of a schema: a union flattened, one type each."""
    schema = _resolve(schema, root)
    union = schema.get("anyOf") or schema.get("oneOf")
    if union:
        for option in union:
            yield from _branches(option, root)
    elif isinstance(schema.get("type"), list):
        for name in schema["type"]:
            yield {**schema, "type": name}
    else:
        yield schema


def _values(schema: Schema) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    return list(schema["enum"]) if "enum" in schema else None


def _type(schema: Schema) -> str | None:
    if isinstance(schema.get("type"), str):
        return str(schema["type"])
    values = _values(schema)
    if values:
        return _JSON_TYPES.get(type(values[0]))
    if "properties" in schema:
        return "object"
    return "array" if "items" in schema else None


def _is_any(schema: Schema) -> bool:
    return _type(schema) is None and _values(schema) is None


def _kind_fits(w: Schema, r: Schema) -> bool:
    """Could R accept W's values at all, by JSON type (integer fits a number reader)?"""
    if _is_any(r):
        return True
    r_type, w_values = _type(r), _values(w)
    w_types = {_JSON_TYPES.get(type(v)) for v in w_values} if w_values else {_type(w)}
    return all(t == r_type or (t == "integer" and r_type == "number") for t in w_types)


def _has_default(props: Schema, name: str) -> bool:
    return "default" in props.get(name, {})


def _literals(values: list[Any]) -> str:
    return "{" + ", ".join(repr(v) for v in values) + "}"


def _describe(branches: list[Schema]) -> str:
    names = []
    for b in branches:
        values = _values(b)
        name = _literals(values) if values is not None else (_type(b) or "anything")
        if name == "object" and b.get("title"):
            name = f"object {b['title']}"
        names.append(name)
    return " | ".join(names)
