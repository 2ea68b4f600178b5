"""``generate_pedcc``: choose a construction for (k, n), run it through the disk cache; ``load_pedcc_file``.

* ``auto``: ``simplex`` if k ≤ n+1; ``simplices`` if k ≤ 2n (optimal); for k > 2n, when the physical
  model is cheap (k²·(n+256) ≤ 2^29) both ``mub`` and ``physical`` run and the one with the lower max
  nearest-neighbour cosine is returned (ties, and differences below 1e-9, go to ``mub``), otherwise
  ``mub``. Beyond ``mub``'s capacity (525,312 rows for n = 512): ``bch`` when n ≥ 32 (the same kind of
  construction with more bases and a looser bound, 1/8 instead of 1/16 for n = 512; milliseconds per
  thousand rows), else ``physical`` when its estimated cost (:func:`physical_cost`) is at most
  ``AUTO_PHYSICAL_MAX_WORK`` = 2^40 multiply-adds (minutes on one core; e.g. n = 2 with k > 8), else a
  ConfigError. Our choice: the physical model's neighbour search costs ≈ 15·k²·n (7.7·10^15 at
  k = 1,000,000, n = 512: hours, in 8 GB chunks), so ``auto`` never starts it at that scale.
* Only the physical model is cached on disk (it takes seconds to hours), keyed by (k, n, seed,
  method[, iters]), in ``$PODHL_CACHE_DIR/pedcc`` or ``~/.cache/podhl/pedcc``. The closed-form
  constructions are not: regenerating them is cheaper than reading them back (``mub`` at
  k = 100,000, n = 512: about a second, against a 205 MB file).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import torch

from podhl.errors import ConfigError
from podhl.pedcc.bch import bch, bch_bound, bch_capacity
from podhl.pedcc.mub import mub, mub_bound, mub_capacity
from podhl.pedcc.physical import DENSE_MAX_K, physical
from podhl.pedcc.quality import pedcc_quality
from podhl.pedcc.simplex import simplex, simplices

log = logging.getLogger("podhl")

METHODS = ("auto", "simplex", "simplices", "mub", "bch", "physical")
CACHE_VERSION = 2  # bumped when an algorithm changes (2: the physical model in exact arithmetic)
AUTO_PHYSICAL_MAX_COST = 2**29  # auto also runs the physical model when k²·(n+256) ≤ this
AUTO_PHYSICAL_MAX_WORK = 2**40  # beyond mub's capacity without bch, auto runs physical only up to this cost
CACHED_METHODS = ("physical",)  # the closed forms regenerate faster than a cache file reads back
_AUTO_MARGIN = 1e-9  # physical must beat mub by more than this: a rounding-level gap never flips the choice
CONSTRUCTIONS = {"simplex": simplex, "simplices": simplices, "mub": mub, "bch": bch}


def physical_cost(k: int, n: int, iters: int | None = None) -> int:
    """Multiply-adds the physical model needs, roughly: dense Gram matrices for k ≤ 4096, else the
    neighbour search every 10 steps (k²·n each) and the 16-neighbour steps."""
    if k <= DENSE_MAX_K:
        return (iters or 200) * 2 * k * k * n
    steps = iters or 150
    return -(-steps // 10) * k * k * n + steps * k * 16 * n * 2


def pedcc_cache_dir() -> Path:
    return Path(os.environ.get("PODHL_CACHE_DIR") or Path.home() / ".cache" / "podhl") / "pedcc"


def resolve_method(k: int, n: int, method: str) -> str:
    """The method to run: simplex, simplices, mub, physical, or ``auto`` for "the better of physical and mub"."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        if k <= n + 1:
            return "simplex"
        if k <= 2 * n:
            return "simplices"  # max cosine 0, the optimum, and a (near-)tight frame of R^n
        mub_ok = k <= mub_capacity(n)
        if mub_ok and k * k * (n + 256) <= AUTO_PHYSICAL_MAX_COST:
            return "auto"  # the physical model is cheap here: run both, keep the better
        if mub_ok:
            method = "mub"
        elif k <= bch_capacity(n):
            method = "bch"  # n ≥ 32: mub's construction with more bases, any k up to 2p·(1 + 4^m)
        elif n >= 2 and physical_cost(k, n) <= AUTO_PHYSICAL_MAX_WORK:
            method = "physical"
        else:
            raise ConfigError(
                f"PEDCC: no construction places num_classes={k} centroids in dim={n} quickly: 'mub' holds at "
                f"most {mub_capacity(n)}, 'bch' at most {bch_capacity(n)} (it needs dim ≥ 32), and the "
                f"physical model would need ~{physical_cost(k, n):.1e} multiply-adds (auto stops at "
                f"{AUTO_PHYSICAL_MAX_WORK:.1e}); use a larger model.feat_dim (≥ 32 holds millions of classes), "
                f"loss.pedcc_method=physical to run it anyway, or loss.pedcc_file with centroids made elsewhere"
            )
    if method == "simplex" and k > n + 1:
        raise ValueError(
            f"method='simplex' needs num_classes ≤ dim + 1 (a regular simplex of k points spans k−1 "
            f"dimensions), got num_classes={k}, dim={n}; use method='physical' or 'auto', or dim ≥ {k - 1}"
        )
    if method == "simplices" and k > 2 * n:
        raise ValueError(
            f"method='simplices' needs num_classes ≤ 2·dim (at most 2n vectors have pairwise inner products "
            f"≤ 0), got num_classes={k}, dim={n}; use method='mub', 'physical' or 'auto'"
        )
    if method == "simplices" and k <= n + 1:
        return "simplex"  # a single simplex
    if method == "mub" and k > mub_capacity(n):
        raise ValueError(
            f"method='mub' places at most {mub_capacity(n)} centroids in dim={n}, got num_classes={k}; "
            f"use method='bch', 'physical' or 'auto'"
        )
    if method == "bch" and k > bch_capacity(n):
        raise ValueError(
            f"method='bch' places at most {bch_capacity(n)} centroids in dim={n} (it needs dim ≥ 32), "
            f"got num_classes={k}; use method='physical' or 'auto'"
        )
    if method == "physical" and n < 2:
        raise ValueError(f"method='physical' needs dim ≥ 2, got dim={n}")
    return method


def generate_pedcc(
    num_classes: int,
    dim: int,
    seed: int = 0,
    method: str = "auto",
    *,
    cache: bool = True,
    iters: int | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """(num_classes, dim) float32 unit rows, evenly distributed on the sphere (POD §2.1, §3.2).

    ``method``: ``auto`` (module docstring; ConfigError when nothing fits quickly), ``simplex``
    (ValueError if k > n+1), ``simplices`` (ValueError if k > 2n; the simplex if k ≤ n+1), ``mub``
    (ValueError above :func:`mub_capacity`), ``bch`` (ValueError above :func:`bch_capacity`), ``physical``.
    ``iters`` overrides the physical model's step count; ``device`` where it runs.
    The same arguments give the same centroids on every machine, thread count and device.
    """
    return generate_with_method(num_classes, dim, seed, method, cache=cache, iters=iters, device=device)[0]


def generate_with_method(
    num_classes: int,
    dim: int,
    seed: int,
    method: str,
    *,
    cache: bool,
    iters: int | None,
    device: str | torch.device,
) -> tuple[torch.Tensor, str]:
    """:func:`generate_pedcc`, also returning the method that produced the centroids."""
    k, n = int(num_classes), int(dim)
    if k < 2:
        raise ValueError(f"num_classes must be ≥ 2, got {num_classes}")
    if n < 1:
        raise ValueError(f"dim must be ≥ 1, got {dim}")
    if iters is not None and iters < 1:
        raise ValueError(f"iters must be ≥ 1, got {iters}")
    resolved = resolve_method(k, n, method)
    if not 2 * k <= n <= 40 * k:
        warnings.warn(
            f"PEDCC: feature dimension n={n} is outside the POD paper's recommended range "
            f"[2k, 40k] = [{2 * k}, {40 * k}] for k={k} classes (POD §3.2)",
            stacklevel=3,
        )
    if resolved != "auto":
        return _generate_one(k, n, seed, resolved, cache, iters, device), resolved
    # Few classes per basis: the physical model is cheap here and usually beats the algebraic set.
    candidates = {name: _generate_one(k, n, seed, name, cache, iters, device) for name in ("mub", "physical")}
    scores = {name: pedcc_quality(c)["max_nn_cos"] for name, c in candidates.items()}
    chosen = "physical" if scores["physical"] < scores["mub"] - _AUTO_MARGIN else "mub"
    log.info(
        "PEDCC auto k=%d n=%d: max NN cos mub %.4f, physical %.4f: using %s",
        k,
        n,
        scores["mub"],
        scores["physical"],
        chosen,
    )
    return candidates[chosen], chosen


def _generate_one(
    k: int, n: int, seed: int, method: str, cache: bool, iters: int | None, device: str | torch.device
) -> torch.Tensor:
    """One concrete method (simplex, simplices, mub, bch or physical), through the disk cache (physical only)."""
    path = None
    if cache and method in CACHED_METHODS:
        tag = f"_it{iters}" if iters is not None and method == "physical" else ""
        path = pedcc_cache_dir() / f"pedcc_k{k}_n{n}_seed{seed}_{method}{tag}_v{CACHE_VERSION}.pt"
        if path.is_file():
            try:
                stored = torch.load(path, map_location="cpu", weights_only=True)
                if tuple(stored.shape) == (k, n):
                    return stored.float()
            except Exception as err:  # corrupt/partial file: regenerate
                log.warning("PEDCC cache %s unreadable (%s): regenerating", path, err)
    t0 = time.perf_counter()
    if method == "physical":
        centroids = physical(k, n, seed, iters, device)
        q = pedcc_quality(centroids)
        log.info(
            "PEDCC physical model k=%d n=%d seed=%d: %.1fs, max NN cos %.4f, mean NN cos %.4f",
            k,
            n,
            seed,
            time.perf_counter() - t0,
            q["max_nn_cos"],
            q["mean_nn_cos"],
        )
    else:
        centroids = CONSTRUCTIONS[method](k, n, seed)
        bounds = {"simplices": 0.0, "mub": mub_bound(k, n), "bch": bch_bound(n)}
        bound = bounds.get(method, -1.0 / (k - 1))
        log.info(
            "PEDCC %s k=%d n=%d seed=%d: %.2fs, max NN cos ≤ %.4f (guaranteed)",
            method,
            k,
            n,
            seed,
            time.perf_counter() - t0,
            bound,
        )
    centroids = centroids.float().contiguous()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(centroids, tmp)
            tmp.replace(path)
        except OSError as err:
            log.warning("PEDCC cache %s not writable (%s)", path, err)
    return centroids


def load_pedcc_file(path: str | os.PathLike, num_classes: int, dim: int) -> torch.Tensor:
    """Centroids from a file — a run's ``pedcc.pt`` (a tensor) or a ``.npy`` — as float32 (k, n) unit rows.

    Raises ConfigError (``pedcc_file must be ..., got '<path>'``) when the file is missing, unreadable, of
    another shape, or has a non-finite value or a zero row.
    """

    def bad(problem: str) -> ConfigError:
        return ConfigError(
            f"pedcc_file must be a .pt or .npy file of ({num_classes}, {dim}) finite non-zero rows "
            f"(num_classes, model.feat_dim; every run writes its own as <run dir>/pedcc.pt): {problem}, "
            f"got {str(path)!r}"
        )

    file = Path(path).expanduser()
    if not file.is_file():
        raise bad("no such file")
    try:
        if file.suffix == ".npy":
            import numpy as np

            data = torch.from_numpy(np.load(file, allow_pickle=False))
        else:
            data = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise bad(f"torch.load/numpy.load cannot read it ({type(err).__name__})") from None
    if not isinstance(data, torch.Tensor) or tuple(data.shape) != (num_classes, dim):
        shape = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise bad(f"it holds {shape}")
    data = data.double()
    if not bool(torch.isfinite(data).all()) or bool((data.norm(dim=1) == 0).any()):
        raise bad("it has a non-finite value or a zero row")
    return torch.nn.functional.normalize(data, dim=1).float()
