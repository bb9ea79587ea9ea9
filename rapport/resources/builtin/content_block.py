"""The content_block resource kind."""
