"""Computed traits every shop needs, present in every workspace without configuration."""

from __future__ import annotations

from rapport.profiles.computed import ANY_EVENT, SeriesKey, TraitDef
from rapport.types import DAY

ORDER = "Order Completed"
_ANY = SeriesKey(ANY_EVENT)
_ORDERS = SeriesKey(ORDER)
_REVENUE = SeriesKey(ORDER, "revenue")
_DELIVERED = SeriesKey("Email Delivered")
_OPENED = SeriesKey("Email Opened")
_CLICKED = SeriesKey("Email Link Clicked")


def _b(name: str, aggregate: str, series: SeriesKey, description: str, **kw: object) -> TraitDef:
    return TraitDef(name=name, aggregate=aggregate, series=series, builtin=True,  # type: ignore[arg-type]
                    description=description, **kw)  # type: ignore[arg-type]


BUILTIN_TRAITS: tuple[TraitDef, ...] = (
    _b("first_seen", "first", _ANY, "Time of the person's first message"),
    _b("last_seen", "last", _ANY, "Time of the person's latest message"),
    _b("order_count", "count", _ORDERS, "Orders, all time"),
    _b("orders_30d", "count", _ORDERS, "Orders in the last 30 days", window_ms=30 * DAY),
    _b("orders_90d", "count", _ORDERS, "Orders in the last 90 days", window_ms=90 * DAY),
    _b("revenue_total", "sum", _REVENUE, "Revenue of all orders"),
    _b("revenue_30d", "sum", _REVENUE, "Revenue in the last 30 days", window_ms=30 * DAY),
    _b("revenue_90d", "sum", _REVENUE, "Revenue in the last 90 days", window_ms=90 * DAY),
    _b("average_order_value", "avg", _REVENUE, "Average revenue per order, all time"),
    _b("last_order_at", "last", _ORDERS, "Time of the latest order"),
    _b("days_since_last_order", "days_since", _ORDERS, "Whole days since the latest order"),
    _b("email_open_rate", "ratio", _OPENED, "Emails opened per email delivered, last 90 days",
       window_ms=90 * DAY, denominator=_DELIVERED),
    _b("email_click_rate", "ratio", _CLICKED, "Email link clicks per email delivered, last 90 days",
       window_ms=90 * DAY, denominator=_DELIVERED),
)
