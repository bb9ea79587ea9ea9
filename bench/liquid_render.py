"""Liquid rendering benchmark: a typical marketing email through rapport's send path, beside bare python-liquid.

    .venv/bin/python bench/liquid_render.py
    .venv/bin/python bench/liquid_render.py --people 5000 --rounds 7 --label quiet

The email is a subject and an HTML body of about 4 KB rendered: a header, a greeting with ``default``,
an ``if`` on a computed trait, a loop over the 3-6 recommended products of the triggering event with
price formatting (``times``/``round``/``prepend``), ``upcase`` and ``truncate``, and a footer with the
unsubscribe link. ``--people`` distinct people (seeded: some without a first name, different tiers,
orders and products) are rendered in turn, single process, single thread:

1. rapport: what a journey send does for each person (``JourneyEngine._prepare``): build a
   ``TemplateContext`` from the recipient's traits, computed traits, segments, unsubscribe link, the
   event and consent, then ``rapport.templates.render(parts, context, strict=False)`` (the sandboxed
   environment, HTML part autoescaped, templates compiled to Python once per source by
   ``rapport.templates.compiled``).
1b. rapport_interpreted: the same, each part rendered by python-liquid's interpreter in the same
   sandbox (``compile_part(...).render``), as sends did before the compiled path and as templates
   outside the compiled subset still do.
2. Bare python-liquid (the interpreter's floor), each part parsed once with ``liquid.Environment``
   (the HTML part with ``autoescape=True``, as rapport renders it) and ``render(**variables)`` with
   the person's variables built beforehand.

The sides run alternately ``--rounds`` times (a shared machine makes one round noisy); the median
emails/s of each and the ratio of rapport's to bare are reported, and all outputs are checked to be equal.
Prints a table and writes ``bench/results/liquid-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import liquid

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import code_version

from rapport.templates.render import TemplateContext, compile_part, render

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

SUBJECT = "{{ traits.first_name | default: 'Hi there' }}, {{ event.products.size }} picks chosen for you"

HTML = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Picked for you</title>
  <style>
    body { margin: 0; padding: 0; background: #f4f4f4; font-family: Helvetica, Arial, sans-serif; }
    .wrap { max-width: 600px; margin: 0 auto; background: #ffffff; }
    .header { padding: 24px; background: #1d3557; color: #ffffff; text-align: center; }
    .product { padding: 16px 24px; border-bottom: 1px solid #eeeeee; }
    .price { color: #e63946; font-weight: bold; }
    .footer { padding: 24px; font-size: 12px; color: #888888; text-align: center; }
  </style>
</head>
<body>
<table class="wrap" role="presentation" width="100%" cellpadding="0" cellspacing="0">
  <tr><td class="header">
    <img src="https://shop.example/static/logo.png" alt="Shop" width="120" height="40">
    <p>Free shipping on orders over $50 &middot; 30-day returns</p>
  </td></tr>
  <tr><td style="padding: 24px;">
    <h1>Hello {{ traits.first_name | default: 'friend' }},</h1>
    {% if computed.orders_90d > 2 %}
    <p>Thank you for being one of our {{ traits.tier | default: 'regular' | upcase }} customers: you have
       ordered {{ computed.orders_90d }} times in the last three months.</p>
    {% elsif computed.orders_90d > 0 %}
    <p>Good to see you again. We picked these with your last order in mind.</p>
    {% else %}
    <p>Still looking around? Here are a few things people like you loved this week.</p>
    {% endif %}
  </td></tr>
  {% for product in event.products %}
  <tr><td class="product">
    <a href="{{ product.url }}?utm_source=email&amp;utm_campaign=picks&amp;pos={{ forloop.index }}">
      <img src="{{ product.image }}" alt="{{ product.name | escape }}" width="160" height="160">
    </a>
    <h2>{{ product.name | truncate: 40 }}</h2>
    <p class="brand">{{ product.brand | upcase }}</p>
    <p>{{ product.description | truncate: 90 }}</p>
    <p class="price">{{ product.price | times: 1.0 | round: 2 | prepend: '$' }}
      {% if product.compare_at > product.price %}<s>{{ product.compare_at | round: 2 | prepend: '$' }}</s>{% endif %}
    </p>
    <a href="{{ product.url }}" style="display: inline-block; padding: 10px 18px; background: #457b9d;
       color: #ffffff; text-decoration: none; border-radius: 4px;">Shop now</a>
  </td></tr>
  {% endfor %}
  <tr><td style="padding: 24px;">
    {% if computed.revenue_total > 200 %}
    <p>As a thank-you, use code <strong>VIP15</strong> for 15% off your next order.</p>
    {% endif %}
    <p>See you soon,<br>The Shop team</p>
  </td></tr>
  <tr><td class="footer">
    <p>You are receiving this email because you subscribed to offers from Shop.
       Shop Inc., 1 Market Street, Springfield.</p>
    <p><a href="{{ unsubscribe_url }}">Unsubscribe</a> &middot;
       <a href="https://shop.example/preferences">Email preferences</a> &middot;
       <a href="https://shop.example/privacy">Privacy</a></p>
  </td></tr>
</table>
</body>
</html>
"""

PARTS = {"subject": SUBJECT, "html": HTML}

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim", "Anita", "Linus"]
TIERS = ["gold", "silver", "bronze", None]
ADJ = ["Organic", "Merino", "Waterproof", "Recycled", "Classic", "Lightweight", "Handmade", "Everyday"]
NOUN = ["Running Jacket", "Cotton Tee", "Trail Shoes", "Backpack", "Wool Socks", "Water Bottle", "Sunglasses",
        "Rain Shell", "Yoga Mat", "Beanie"]
BRANDS = ["northwind", "contoso", "fabrikam", "tailspin", "wingtip"]


def people(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` distinct recipients as a journey send sees them: traits, computed traits, segments, the
    unsubscribe link, the entry event's properties (the recommended products) and consent by purpose."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        traits: dict[str, Any] = {"email": f"person{i}@example.com", "city": rng.choice(["Lyon", "Oslo", "Austin"])}
        if rng.random() < 0.8:
            traits["first_name"] = rng.choice(FIRST)
        tier = rng.choice(TIERS)
        if tier is not None:
            traits["tier"] = tier
        computed = {"orders_90d": rng.choice([0, 0, 1, 2, 3, 5, 8]), "revenue_total": round(rng.uniform(0, 600), 2),
                    "churn_score": round(rng.random(), 3)}
        products = []
        for j in range(rng.randint(3, 6)):
            price = round(rng.uniform(5, 250), 2)
            name = f"{rng.choice(ADJ)} {rng.choice(NOUN)}"
            products.append({
                "id": f"sku-{rng.randrange(10_000)}", "name": name, "brand": rng.choice(BRANDS),
                "description": f"{name} made to last: comfortable, easy to care for and ready for every day "
                               f"of the week, in {rng.choice(['black', 'navy', 'sand', 'olive'])}.",
                "price": price, "compare_at": round(price * rng.choice([1.0, 1.0, 1.2, 1.5]), 2),
                "url": f"https://shop.example/p/{i}-{j}", "image": f"https://cdn.shop.example/img/{i}-{j}.jpg",
            })
        out.append({
            "traits": traits, "computed": computed, "segments": ("newsletter",) if i % 3 else ("newsletter", "vip"),
            "unsubscribe_url": f"https://shop.example/u/{i:08d}?sig=0123456789abcdef",
            "event": {"products": products, "cart_id": f"cart-{i}"},
            "consent": {"marketing_email": True, "personalization": i % 5 != 0},
        })
    return out


def rapport_send(population: Sequence[dict[str, Any]]) -> Callable[[], list[dict[str, Any]]]:
    """Each person rendered as ``JourneyEngine`` renders a send: a ``TemplateContext`` then ``render``."""
    def run() -> list[dict[str, Any]]:
        out = []
        for p in population:
            context = TemplateContext(p["traits"], p["computed"], p["event"], p["consent"], p["segments"],
                                      p["unsubscribe_url"])
            out.append(render(PARTS, context, strict=False))
        return out
    return run


def rapport_interpreted(population: Sequence[dict[str, Any]]) -> Callable[[], list[dict[str, Any]]]:
    """rapport's sandbox through python-liquid's interpreter: ``TemplateContext`` then each part's
    parsed template rendered."""
    def run() -> list[dict[str, Any]]:
        out = []
        for p in population:
            context = TemplateContext(p["traits"], p["computed"], p["event"], p["consent"], p["segments"],
                                      p["unsubscribe_url"])
            variables = context.variables()
            out.append({name: compile_part(name, source).render(**variables) for name, source in PARTS.items()})
        return out
    return run


def bare(population: Sequence[dict[str, Any]], *, autoescape: bool = True) -> Callable[[], list[dict[str, Any]]]:
    """Bare python-liquid: each part parsed once, ``render(**variables)`` per person."""
    subject = liquid.Environment().from_string(SUBJECT)
    html = liquid.Environment(autoescape=autoescape).from_string(HTML)
    variables = [{"traits": p["traits"], "computed": p["computed"], "event": p["event"], "consent": p["consent"],
                  "segments": list(p["segments"]), "unsubscribe_url": p["unsubscribe_url"]} for p in population]

    def run() -> list[dict[str, Any]]:
        return [{"subject": subject.render(**v), "html": html.render(**v)} for v in variables]
    return run


def timed(fn: Callable[[], list[dict[str, Any]]], count: int) -> tuple[float, list[dict[str, Any]]]:
    started = time.perf_counter()
    out = fn()
    return count / (time.perf_counter() - started), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=3000, help="distinct people rendered per round")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of each side; medians reported")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="cProfile one round of rapport's path and print the top")
    ap.add_argument("--label", default="", help="added to the result file name")
    args = ap.parse_args()

    population = people(args.people, args.seed)
    sides = {"rapport": rapport_send(population), "rapport_interpreted": rapport_interpreted(population),
             "bare": bare(population),
             "bare_no_autoescape": bare(population, autoescape=False)}
    # Same output from every side (the first round doubles as warm-up).
    first = {name: fn() for name, fn in sides.items()}
    if first["rapport"] != first["bare"] or first["rapport_interpreted"] != first["bare"]:
        raise SystemExit("rapport and bare python-liquid rendered different emails")
    sizes = [len(m["html"].encode()) for m in first["rapport"]]
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(sides["rapport"])
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)

    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, fn in sides.items():
            rate, _out = timed(fn, len(population))
            rates[name].append(rate)
    med = {name: statistics.median(r) for name, r in rates.items()}
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "python_liquid": liquid.__version__},
        "args": vars(args), "code": code_version(),
        "html_bytes": {"min": min(sizes), "median": statistics.median(sizes), "max": max(sizes)},
        "emails_per_s": {name: round(v, 1) for name, v in med.items()},
        "rounds": {name: [round(x, 1) for x in r] for name, r in rates.items()},
        "ratio_rapport_to_bare": round(med["rapport"] / med["bare"], 3),
        "outputs_equal": True,
    }
    print(f"\nLiquid render, one thread, {args.people} people x {args.rounds} rounds, HTML "
          f"{results['html_bytes']['median'] / 1024:.1f} KiB median ({min(sizes)}-{max(sizes)} bytes)")
    print(f"  rapport send path (TemplateContext + render)  {med['rapport']:>9,.0f} emails/s  "
          f"{results['ratio_rapport_to_bare']:.2f} of bare  (target >= 10,000)")
    print(f"  rapport, python-liquid interpreter            {med['rapport_interpreted']:>9,.0f} emails/s")
    print(f"  bare python-liquid, HTML autoescaped          {med['bare']:>9,.0f} emails/s")
    print(f"  bare python-liquid, no autoescape             {med['bare_no_autoescape']:>9,.0f} emails/s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"liquid-{run}{'-' + args.label if args.label else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
