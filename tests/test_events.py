"""The wire contract: every producer builds events through one builder per kind, in FIELDS order."""

from __future__ import annotations

import pytest

from observability import events as ev


@pytest.mark.parametrize("kind", sorted(ev.FIELDS))
def test_each_builder_puts_every_field_where_the_contract_names_it(kind: str) -> None:
    names = ev.FIELDS[kind]
    values = {name: f"value of {name}" for name in names}
    event = ev.BUILDERS[kind](values[names[0]], values["ts"], **{n: values[n] for n in names[2:]})
    assert ev.as_dict(event) == {"kind": kind, **values}


def test_a_builder_refuses_a_field_the_contract_does_not_have() -> None:
    with pytest.raises(TypeError):
        ev.account("a1", 0.0, name="Acme", vip=False, colour="red")


def test_the_string_limits_of_the_contract_are_the_schemas_column_lengths() -> None:
    """`LIMITS` lets the SDK check lengths without SQLAlchemy; the schema must say the same."""
    import sqlalchemy as sa

    from observability.store.wire import TABLE_OF_KIND

    for kind, table in TABLE_OF_KIND.items():
        strings = {
            name: table.c[name].type.length
            for name in ev.FIELDS[kind]
            if name != "ts" and isinstance(table.c[name].type, sa.String)
        }
        assert ev.LIMITS[kind] == strings, kind
