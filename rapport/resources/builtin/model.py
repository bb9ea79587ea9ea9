"""Model: a propensity model over computed traits, trained by `rapport models train`.

The label is whether ``target.event`` (matching ``target.where``) happens within ``target.within``
after a cutoff (``negate: true``: whether it does not); the features are computed traits, read as of
the cutoff. With ``write_to``, the calibrated scores become the computed trait of that name. Features,
purpose and ``write_to`` are checked against the other resources once the whole apply is known
(``reference_problems``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from rapport.resources.checks import boolean, duration, list_of, nested, reference, rule, text
from rapport.resources.fields import INVALID, Check, FieldErrors, check_document, did_you_mean, optional, required
from rapport.resources.kinds import KindSpec, register
from rapport.types import Json, JsonObject

ALGORITHMS: Final = ("logistic_regression",)
ALGORITHM_HELP: Final = "'logistic_regression'"
FEATURES_HELP: Final = "a non-empty list of computed trait names, each at most once"


def _algorithm() -> Check:
    def run(value: Json, ctx: FieldErrors) -> Json:
        if value in ALGORITHMS:
            return value
        if value == "gradient_boosting":
            ctx.add(f"{ctx.label} 'gradient_boosting' is not available: a model is stored and served as plain "
                    f"numbers, which a linear model is; expected {ALGORITHM_HELP}", ALGORITHM_HELP)
            return INVALID
        hint = did_you_mean(value, ALGORITHMS) if isinstance(value, str) else ""
        ctx.add(f"unknown {ctx.label} {value!r}{hint}; expected {ALGORITHM_HELP}", ALGORITHM_HELP)
        return INVALID

    return Check(ALGORITHM_HELP, run)


_FEATURE_LIST: Final = list_of(reference("a computed trait name"), unique=True)


def _features() -> Check:
    def run(value: Json, ctx: FieldErrors) -> Json:
        if isinstance(value, list) and not value:
            return ctx.reject(value, FEATURES_HELP)
        return _FEATURE_LIST(value, ctx)

    return Check(FEATURES_HELP, run)


FIELDS: Final = {
    "description": optional(text()),
    "target": required(nested({
        "event": required(text("the event name the model predicts, e.g. 'Order Completed'")),
        "within": required(duration()),
        "negate": optional(boolean(), default=False),
        "where": optional(rule("a rule over the event's properties, e.g. event.revenue > 100", event_filter=True)),
    })),
    "audience": optional(rule("a rule choosing who is trained on and scored, e.g. computed.order_count >= 1")),
    "features": required(_features()),
    "algorithm": optional(_algorithm(), default="logistic_regression"),
    "write_to": optional(reference("a new computed trait name for the scores")),
    "purpose": optional(reference("a consent purpose name; only people with it are trained on and scored"),
                        default="analytics"),
}


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a Model document (its references are checked by ``reference_problems``)."""
    return check_document(doc, ctx, FIELDS)


def reference_problems(specs: Mapping[tuple[str, str], JsonObject]) -> Iterator[tuple[str, str, str, str]]:
    """``(kind, model name, field, message)`` for each reference of a Model in the final resources ``specs``
    (by kind and name) that does not hold: features that are no computed trait (built-in, ``ComputedTrait``
    or another model's ``write_to``), an unknown purpose, a ``write_to`` that names an existing trait."""
    # Imported on use: the catalogs are needed only when models are applied.
    from rapport.consent.purposes import Catalog
    from rapport.profiles.builtins import BUILTIN_TRAITS

    models = {name: spec for (kind, name), spec in specs.items() if kind == "Model"}
    if not models:
        return
    defined = {name for kind, name in specs if kind == "ComputedTrait"} | {t.name for t in BUILTIN_TRAITS}
    writers: dict[str, list[str]] = {}
    for name, spec in models.items():
        if spec.get("write_to"):
            writers.setdefault(str(spec["write_to"]), []).append(name)
    purposes = set(Catalog.from_resources([s for (k, _), s in specs.items() if k == "ConsentPurpose"]).names())
    for name, spec in sorted(models.items()):
        write_to = spec.get("write_to")
        known = defined | {w for w, owners in writers.items() if owners != [name]}
        for index, feature in enumerate(spec.get("features") or []):
            if feature == write_to:
                yield "Model", name, f"features[{index}]", f"feature {feature!r} is this model's own score"
            elif feature not in known:
                yield ("Model", name, f"features[{index}]",
                       f"unknown computed trait {feature!r}{did_you_mean(str(feature), known)}")
        if write_to:
            if write_to in defined:
                yield ("Model", name, "write_to",
                       f"write_to {write_to!r} names an existing computed trait; choose a new name for the scores")
            elif len(writers[str(write_to)]) > 1:
                others = ", ".join(repr(o) for o in sorted(writers[str(write_to)]) if o != name)
                yield "Model", name, "write_to", f"write_to {write_to!r} is also written by model {others}"
        yield from _audience_problems(name, spec.get("audience"), known | ({str(write_to)} if write_to else set()),
                                      purposes)
        purpose = spec.get("purpose")
        if purpose and purpose not in purposes:
            yield ("Model", name, "purpose",
                   f"unknown consent purpose {purpose!r}{did_you_mean(str(purpose), purposes)}")


def _audience_problems(name: str, text: object, traits: set[str],
                       purposes: set[str]) -> Iterator[tuple[str, str, str, str]]:
    from rapport.errors import ValidationError
    from rapport.rules import parse, paths

    if not text:
        return
    try:
        node = parse(str(text))
    except ValidationError:
        return  # reported by the document's own check
    for path in sorted(paths(node), key=lambda p: p.span.start):
        at = f"line {path.span.line}, col {path.span.col}: "
        if path.root == "computed" and path.parts and path.parts[0] not in traits:
            yield ("Model", name, "audience",
                   f"{at}unknown computed trait {path.parts[0]!r}{did_you_mean(path.parts[0], traits)}")
        elif path.root == "consent" and path.parts and path.parts[0] not in purposes:
            yield ("Model", name, "audience",
                   f"{at}unknown consent purpose {path.parts[0]!r}{did_you_mean(path.parts[0], purposes)}")
        elif path.root in ("context", "event"):
            yield "Model", name, "audience", f"{at}an audience reads stored profiles; {path.root}.* is not available"


MODEL: Final = register(KindSpec("Model", validate, tuple(FIELDS)))
