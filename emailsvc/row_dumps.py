"""Schemas that dump rows as marshmallow does, through each field's own conversion, without its per-field layers.

marshmallow dumps every field through an accessor, a missing-value check and a default lookup before the
field's conversion (`_serialize`); for the log object of a send's answer (about thirty fields, with
nested recipients) those layers cost more than the conversions, a tenth of the send's CPU. A `RowSchema`
dumping a mapping that holds every field's attribute calls each field's `_serialize` directly, in the
schema's field order, so the output is the same by construction (tests/test_row_dumps.py compares them).
Anything else goes marshmallow's way: a `many` dump, an object that is not a mapping or lacks a field's
key, a schema with dump hooks, a field that reads no attribute of its own (`Method`, `Function`) or a
dotted one.
"""

from collections.abc import Mapping

from marshmallow import Schema
from marshmallow.decorators import POST_DUMP, PRE_DUMP


class RowSchema(Schema):
    _plan = None  # [(output key, attribute, the field's conversion)], or False: marshmallow's way only

    def dump(self, obj, *, many=None):
        plan = self._plan if self._plan is not None else self._make_plan()
        if plan and not (self.many if many is None else many) and isinstance(obj, Mapping):
            try:
                return {key: convert(obj[attr], attr, obj) for key, attr, convert in plan}
            except KeyError:  # a field's attribute is not in the row: marshmallow leaves it out
                pass
        return super().dump(obj, many=many)

    def _make_plan(self):
        fields = self.dump_fields.items()
        plain = all(f._CHECK_ATTRIBUTE and "." not in (f.attribute or name) for name, f in fields)
        hooks = self._hooks[PRE_DUMP] or self._hooks[POST_DUMP]
        self._plan = plain and not hooks and [
            (f.data_key if f.data_key is not None else name, f.attribute or name, f._serialize) for name, f in fields
        ]  # fmt: skip
        return self._plan
