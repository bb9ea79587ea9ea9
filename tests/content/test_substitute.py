"""The substitution fast path renders exactly what Liquid renders, whenever it renders at all."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from rapport.content.substitute import Output, plan, substitute
from rapport.templates.render import compile_part

NAMES = st.sampled_from(["first_name", "city", "n", "size", "tags", "missing"])
CHARS = st.characters(blacklist_categories=("Cs",))
"""JSON text: no lone surrogates."""
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
                    st.text(CHARS, max_size=8), st.sampled_from(["", "<b>&'\"", "a\r\nb"]))
VALUES = st.one_of(SCALARS, st.lists(st.text(CHARS, max_size=3), max_size=2),
                   st.dictionaries(NAMES, SCALARS, max_size=3))
TEXT = st.text(alphabet=st.characters(blacklist_characters="{}%", blacklist_categories=("Cs",)), max_size=10)
OUTPUT = st.tuples(st.sampled_from(["traits", "computed", "context"]), NAMES,
                   st.one_of(st.none(), st.sampled_from(["friend", "", "<i>x</i>"])))


def source_of(pieces: list[Any]) -> str:
    out = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        else:
            root, name, fallback = piece
            out.append(f"{{{{ {root}.{name}" + (f" | default: '{fallback}'" if fallback is not None else "") + " }}")
    return "".join(out)


@given(st.lists(st.one_of(TEXT, OUTPUT), max_size=6),
       st.dictionaries(st.sampled_from(["traits", "computed", "context"]),
                       st.dictionaries(NAMES, VALUES, max_size=4), max_size=3),
       st.booleans())
@example(["Hi ", ("traits", "first_name", "friend")], {"traits": {"first_name": "<Ada>"}}, True)
@example([("traits", "size", None)], {"traits": {"a": 1}}, False)
def test_substitution_agrees_with_liquid(pieces: list[Any], variables: dict[str, Any], html: bool) -> None:
    source = source_of(pieces)
    template = compile_part("html" if html else "body", source)
    planned = plan(template)
    if "{{" in source:
        assert planned is not None
    if planned is None:
        return
    fast = substitute(planned, variables, html)
    if fast is not None:
        assert fast == template.render(variables)


def test_other_templates_are_left_to_liquid() -> None:
    for source in ("{% if traits.x %}y{% endif %}", "{{ traits.x | upcase }}", "{{ traits.x | default: computed.y }}",
                   "{{ traits.x[0] }}", "{{ traits.x | default: 'a', allow_false: true }}"):
        assert plan(compile_part("body", source)) is None, source
    pieces = plan(compile_part("body", "Hi {{ traits.first_name | default: 'you' }}!"))
    assert pieces == ("Hi ", Output(("traits", "first_name"), "you"), "!")
    assert substitute(pieces, {"traits": {"first_name": ["a"]}}, False) is None
