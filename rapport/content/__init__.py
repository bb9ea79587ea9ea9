"""Content: ContentBlock and Placement resources, locale fallback, the fields a block reads and the PII lint."""
