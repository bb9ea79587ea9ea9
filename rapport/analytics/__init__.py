"""Analytics: KPIs per segment, journey and message, with small cells suppressed."""
