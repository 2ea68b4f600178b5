"""Predefined Evenly-Distributed Class Centroids (PEDCC; POD §2.1, §3.2), one construction a module.

``generate_pedcc(num_classes, dim, seed=0, method="auto")`` returns a float32 (k, n) tensor of unit
rows; the same arguments give the same centroids on every machine, thread count and device.

* :mod:`~podhl.pedcc.simplex` — ``simplex`` (k ≤ n+1, the optimum) and ``simplices`` (k ≤ 2n, optimal);
* :mod:`~podhl.pedcc.mub` — ``mub``: nearly mutually unbiased bases (any k up to a capacity, milliseconds),
  with :mod:`~podhl.pedcc.galois` for its GF(2^m) quadratic forms;
* :mod:`~podhl.pedcc.bch` — ``bch``: more bases of the same kind beyond ``mub``'s capacity (millions of
  rows, about a second per million, integer arithmetic: the same bits everywhere);
* :mod:`~podhl.pedcc.physical` — ``physical``: the repulsion model of POD [17], in exact arithmetic;
* :mod:`~podhl.pedcc.generate` — ``auto`` routing, the disk cache, ``load_pedcc_file``;
* :mod:`~podhl.pedcc.quality` — nearest-neighbour cosines; :mod:`~podhl.pedcc.cli` — ``podhl-pedcc``.
"""

from podhl.pedcc.bch import bch_bound, bch_capacity
from podhl.pedcc.cli import main
from podhl.pedcc.generate import METHODS, generate_pedcc, load_pedcc_file, pedcc_cache_dir
from podhl.pedcc.mub import mub_bound, mub_capacity
from podhl.pedcc.quality import pedcc_quality

__all__ = [
    "METHODS",
    "generate_pedcc",
    "load_pedcc_file",
    "pedcc_cache_dir",
    "pedcc_quality",
    "mub_capacity",
    "mub_bound",
    "bch_capacity",
    "bch_bound",
    "main",
]
