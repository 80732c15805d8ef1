"""Blocks and overlapping tiles over the imagery grid.

A **block** is the unit of work of a batch job (one AWS Batch array child, one pair of output COGs):
a square of ``block_size`` pixels, ids ``r{row:03d}c{col:03d}``. **Tiles** are the model's input windows
(``tile`` pixels, overlapping by ``2 × margin``) on one global grid over the whole raster, so that
the value of a pixel never depends on which block it falls in: blocks computed separately join without
seams. A tile lies inside the raster whenever the raster is at least one tile wide (the last tile is
shifted back inside, as IGN's ``zone_detect`` does); a raster smaller than a tile is read whole and padded.

Two ways of combining overlapping tiles:
- ``centre`` (IGN's scheme): each pixel comes from the tile whose centre region holds it — the
  boundary between two neighbouring tiles is the middle of their overlap (``margin`` pixels in from
  each tile edge for a regular grid); tile borders are only used at the raster's own edges;
- ``blend``: softmax outputs are averaged with a weight that falls to ~0 at tile borders (Hann window).
Compute overhead is ``(tile / (tile − 2 × margin))²``: 1.78 for 512/64, 4.0 for IGN's 512/128.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from rasterio.windows import Window

from ocsge.errors import OcsgeError


@dataclass(frozen=True)
class Block:
    index: int
    row: int
    col: int
    row_off: int
    col_off: int
    height: int
    width: int

    @property
    def id(self) -> str:
        return f"r{self.row:03d}c{self.col:03d}"

    @property
    def window(self) -> Window:
        return Window(self.col_off, self.row_off, self.width, self.height)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def layout_blocks(width: int, height: int, block_size: int) -> list[Block]:
    if block_size < 32:
        raise OcsgeError(f"block size {block_size} px is too small (at least 32)")
    blocks = []
    for r in range(math.ceil(height / block_size)):
        for c in range(math.ceil(width / block_size)):
            r0, c0 = r * block_size, c * block_size
            blocks.append(Block(len(blocks), r, c, r0, c0, min(block_size, height - r0), min(block_size, width - c0)))
    return blocks


@dataclass(frozen=True)
class Axis:
    """Tile starts along one axis of length ``n``, their footprints and their centre-crop keep intervals."""

    n: int
    tile: int
    margin: int

    def __post_init__(self) -> None:
        if self.tile < 32 or self.margin < 0 or 2 * self.margin >= self.tile:
            raise OcsgeError(f"invalid tiling: tile {self.tile} px with margin {self.margin} px")

    @property
    def span(self) -> int:
        """Pixels actually read per tile on this axis (the raster's length when it is shorter than a tile)."""
        return min(self.tile, self.n)

    @cached_property
    def starts(self) -> np.ndarray:
        if self.n <= self.tile:
            return np.array([0])
        stride = self.tile - 2 * self.margin
        starts = [*list(range(0, self.n - self.tile, stride)), self.n - self.tile]
        return np.array(sorted(set(starts)))

    @cached_property
    def keep(self) -> np.ndarray:
        """``(k, 2)`` half-open intervals: the pixels each tile decides in ``centre`` mode (a partition of 0…n)."""
        s = self.starts
        bounds = [0] + [int((s[i] + s[i - 1] + self.span) // 2) for i in range(1, len(s))] + [self.n]
        return np.array([bounds[:-1], bounds[1:]]).T

    def tiles_for(self, lo: int, hi: int, mode: str) -> np.ndarray:
        """Indices of the tiles that contribute to pixels ``lo…hi`` (exclusive)."""
        if mode == "centre":
            k = self.keep
            return np.nonzero((k[:, 0] < hi) & (k[:, 1] > lo))[0]
        s = self.starts
        return np.nonzero((s < hi) & (s + self.span > lo))[0]


def hann_weights(span: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D blending weights for a tile: a Hann window, flat on the sides that touch the raster edge."""
    u = (np.arange(span) + 0.5) / span
    w = np.sin(np.pi * u) ** 2
    half = span // 2
    if at_start:
        w[:half] = 1.0
    if at_end:
        w[half:] = 1.0
    return np.maximum(w, 1e-3).astype(np.float32)


@dataclass(frozen=True)
class Tile:
    """One model input window (global pixel offsets) and the block it is computed for."""

    block: int
    iy: int
    ix: int
    row: int
    col: int
    height: int
    width: int

    @property
    def window(self) -> Window:
        return Window(self.col, self.row, self.width, self.height)


class Tiling:
    """The global tile grid of a raster, and the tiles each block needs."""

    def __init__(self, width: int, height: int, tile: int, margin: int, mode: str) -> None:
        if mode not in ("centre", "blend"):
            raise OcsgeError(f"unknown stitching mode {mode!r}: expected 'centre' or 'blend'")
        self.mode = mode
        self.x = Axis(width, tile, margin)
        self.y = Axis(height, tile, margin)
        self.tile = tile

    def tiles(self, block: Block) -> list[Tile]:
        iys = self.y.tiles_for(block.row_off, block.row_off + block.height, self.mode)
        ixs = self.x.tiles_for(block.col_off, block.col_off + block.width, self.mode)
        return [
            Tile(block.index, int(iy), int(ix), int(self.y.starts[iy]), int(self.x.starts[ix]), self.y.span,
                 self.x.span)
            for iy in iys
            for ix in ixs
        ]

    @property
    def overhead(self) -> float:
        """Computed pixels per output pixel (ignoring block borders)."""
        return float(len(self.x.starts) * self.x.span * len(self.y.starts) * self.y.span) / (self.x.n * self.y.n)

    def weights(self, tile: Tile) -> np.ndarray:
        wy = hann_weights(tile.height, tile.iy == 0, tile.iy == len(self.y.starts) - 1)
        wx = hann_weights(tile.width, tile.ix == 0, tile.ix == len(self.x.starts) - 1)
        return np.outer(wy, wx)
