"""Training engine: the build step (``build``), the loop (``trainer``), run records (``records``)."""
