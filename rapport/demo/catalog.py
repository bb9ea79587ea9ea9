"""The demo shop's fixed world: products, people's names, cities, campaigns and support topics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    sku: str
    name: str
    category: str
    price: float


@dataclass(frozen=True, slots=True)
class City:
    name: str
    country: str
    currency: str
    timezone: str
    phone_prefixes: tuple[str, ...]
    """E.164 prefixes of phone numbers; ``phone_digits`` random digits follow (valid for libphonenumber)."""
    phone_digits: int


_LINES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], float], ...] = (
    ("Shoes", ("Trail", "City", "Canvas", "Leather", "Running"), ("Sneaker", "Boot", "Loafer"), 79.0),
    ("Outerwear", ("Rain", "Quilted", "Wool", "Down"), ("Jacket", "Parka", "Coat"), 149.0),
    ("Knitwear", ("Merino", "Cashmere", "Cotton", "Cable"), ("Sweater", "Cardigan", "Beanie"), 69.0),
    ("Accessories", ("Canvas", "Leather", "Recycled"), ("Tote", "Backpack", "Wallet", "Belt"), 39.0),
    ("Home", ("Linen", "Stoneware", "Oak"), ("Throw", "Mug Set", "Lamp", "Cushion"), 45.0),
)


def _products() -> tuple[Product, ...]:
    out: list[Product] = []
    for category, styles, items, base in _LINES:
        for i, style in enumerate(styles):
            for j, item in enumerate(items):
                n = len(out) + 1
                # Prices vary by style and item but stay fixed, so revenue is reproducible.
                price = round(base * (0.7 + 0.15 * i + 0.2 * j) - 0.01, 2)
                out.append(Product(f"prd_{n:03d}", f"{category[:3].upper()}-{n:04d}", f"{style} {item}", category,
                                   price))
    return tuple(out)


PRODUCTS: tuple[Product, ...] = _products()
CATEGORIES: tuple[str, ...] = tuple(line[0] for line in _LINES)

FIRST_NAMES: tuple[str, ...] = (
    "Ada", "Alan", "Amara", "Anna", "Ben", "Carla", "Chen", "Chloe", "Daniel", "David", "Elena", "Emil", "Emma",
    "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Isaac", "Jonas", "Julia", "Karim", "Lea", "Leon", "Lina",
    "Lucas", "Maya", "Mila", "Nadia", "Noah", "Nora", "Omar", "Paul", "Priya", "Rosa", "Sam", "Sara", "Sofia",
    "Theo", "Tom", "Uma", "Victor", "Yara", "Yusuf", "Zoe",
)
LAST_NAMES: tuple[str, ...] = (
    "Andersen", "Bauer", "Becker", "Bernard", "Brown", "Chen", "Costa", "Dubois", "Fischer", "Garcia", "Hansen",
    "Hoffmann", "Jansen", "Kim", "Klein", "Kowalski", "Lambert", "Lee", "Martin", "Meyer", "Moreau", "Murphy",
    "Nguyen", "Novak", "Okafor", "Patel", "Petit", "Richter", "Rossi", "Schmidt", "Schulz", "Silva", "Smith",
    "Taylor", "Visser", "Wagner", "Walker", "Weber", "Wilson", "Wright",
)
EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net", "mail.example", "post.example")
WORK_DOMAINS: tuple[str, ...] = ("acme.example", "globex.example", "initech.example", "umbrella.example")

CITIES: tuple[City, ...] = (
    City("Berlin", "DE", "EUR", "Europe/Berlin", ("+49151", "+49152", "+49176"), 8),
    City("Hamburg", "DE", "EUR", "Europe/Berlin", ("+49157", "+49171"), 8),
    City("Munich", "DE", "EUR", "Europe/Berlin", ("+49151", "+49160"), 8),
    City("Paris", "FR", "EUR", "Europe/Paris", ("+3375", "+3376", "+3377"), 7),
    City("Lyon", "FR", "EUR", "Europe/Paris", ("+3378",), 7),
    City("Amsterdam", "NL", "EUR", "Europe/Amsterdam", ("+3161", "+3162"), 7),
    City("Rotterdam", "NL", "EUR", "Europe/Amsterdam", ("+3163", "+3164"), 7),
    City("London", "GB", "GBP", "Europe/London", ("+4474", "+4475"), 8),
    City("Manchester", "GB", "GBP", "Europe/London", ("+4478",), 8),
    City("New York", "US", "USD", "America/New_York", ("+12127", "+16468"), 6),
    City("Chicago", "US", "USD", "America/Chicago", ("+13124", "+17735"), 6),
    City("San Francisco", "US", "USD", "America/Los_Angeles", ("+14156",), 6),
)

PLANS: tuple[str, ...] = ("free", "plus", "premium")

PAGES: tuple[tuple[str, str], ...] = (
    ("Home", "/"), ("Category", "/c/"), ("Search", "/search"), ("Sale", "/sale"), ("Lookbook", "/lookbook"),
)
REFERRERS: tuple[str, ...] = (
    "", "", "https://www.google.com/", "https://www.instagram.com/", "https://news.example/", "https://www.bing.com/",
)
USER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
)

CAMPAIGNS: tuple[tuple[str, str], ...] = (
    ("New arrivals", "Fresh in: this week's new arrivals"),
    ("Weekend sale", "{first_name}, 20% off ends Sunday"),
    ("Style guide", "Five ways to layer this season"),
    ("Back in stock", "Your favourites are back"),
    ("Members' week", "Members get early access"),
    ("Care guide", "How to make your knitwear last"),
)
COUPONS: tuple[str, ...] = ("WELCOME10", "WEEKEND20", "FREESHIP", "MEMBER15")

TICKET_TOPICS: tuple[str, ...] = (
    "Where is my order?", "Wrong size delivered", "Return request", "Damaged item", "Change delivery address",
    "Question about sizing", "Refund status",
)
TICKET_CHANNELS: tuple[str, ...] = ("email", "chat", "phone")
