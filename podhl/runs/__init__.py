"""Run-folder tools: one reader (``reader``), the paper tables (``tables``, ``podhl-tables``), figures,
the sweep summary."""
