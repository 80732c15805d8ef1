"""Numba kernels of the vectorisation: one pass over a class block gives its 4-connected same-value
components, their area, class, width and shared boundary lengths, as runs.

A block is read once. Its rows are cut into **runs** (maximal horizontal stretches of one value); runs of
consecutive rows that overlap and hold the same value are united (union-find over runs, not pixels), so
the work after the first scan is proportional to the number of runs, which is tens of times smaller
than the number of pixels on a land-cover map. Components are numbered 1…n in raster order of their
first pixel (deterministic), nodata (0) keeps label 0. In the same pass:

- the shared boundary of every pair of adjacent components is counted on the runs: one unit for each
  pair of consecutive runs in a row, the overlap length for each pair of overlapping runs of two rows
  (no pixel pairs, no ``np.unique`` over the block: a one-entry cache per component folds the repeats
  of a long boundary before the final sort);
- the width of each component: a chamfer (3-4) distance transform from its boundary pixels (a pixel
  with a 4-neighbour of another value; block edges are no boundary), whose maximum over the component
  gives the diameter of the widest disc inside it, ``2·d + 2`` px (a strip of w px reads w or w + 1,
  up to the chamfer's 8 % on slanted edges; the exact Euclidean transform cost more than all the rest).

The runs are kept (``BlockRuns``) so that polygonisation paints the final regions from them without
reading or labelling the raster again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

CHAMFER_STEP, CHAMFER_DIAG = 3, 4  # Borgefors' 3-4 chamfer: distances in thirds of a pixel


@dataclass
class BlockRuns:
    """The runs of a block: row ``r`` holds runs ``row_start[r]:row_start[r + 1]``; run ``i`` starts at
    column ``col[i]`` and ends where the next run of its row starts (or at the block's width); ``label``
    is its component (1…n, 0 = nodata)."""

    width: int
    row_start: np.ndarray  # int64, height + 1
    col: np.ndarray  # int32
    label: np.ndarray  # int32

    @property
    def height(self) -> int:
        return len(self.row_start) - 1

    @property
    def nbytes(self) -> int:
        return self.row_start.nbytes + self.col.nbytes + self.label.nbytes


@dataclass
class BlockComponents:
    """What pass 1 learns of a block: its runs, and per component (index = label − 1) class, area (px),
    width (px); the edges between its components (labels, shared length in px); the labels along its four
    edges (for the seams)."""

    runs: BlockRuns
    cls: np.ndarray  # uint16
    area: np.ndarray  # int64
    wide: np.ndarray  # float64
    eu: np.ndarray  # int64, labels 1…n
    ev: np.ndarray
    elen: np.ndarray
    top: np.ndarray  # int32 labels along the first row (0 = nodata)
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray

    @property
    def n(self) -> int:
        return len(self.cls)


def coarse_window(row_off: int, col_off: int, height: int, width: int, k: int) -> tuple[int, int, int, int]:
    """The coarse cells (row0, col0, rows, cols) that a block of the mosaic touches on a grid of k px."""
    r0, c0 = row_off // k, col_off // k
    return r0, c0, (row_off + height - 1) // k - r0 + 1, (col_off + width - 1) // k - c0 + 1


@numba.njit(cache=True, nogil=True)
def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@numba.njit(cache=True, nogil=True)
def _runs(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = data.shape
    count = 0
    for r in range(h):
        count += 1
        for c in range(1, w):
            if data[r, c] != data[r, c - 1]:
                count += 1
    row_start = np.empty(h + 1, np.int64)
    col = np.empty(count, np.int32)
    val = np.empty(count, data.dtype)
    i = 0
    for r in range(h):
        row_start[r] = i
        col[i] = 0
        val[i] = data[r, 0]
        i += 1
        for c in range(1, w):
            if data[r, c] != data[r, c - 1]:
                col[i] = c
                val[i] = data[r, c]
                i += 1
    row_start[h] = i
    return row_start, col, val


@numba.njit(cache=True, nogil=True)
def _label_runs(row_start: np.ndarray, col: np.ndarray, val: np.ndarray, w: int) -> tuple[np.ndarray, int]:
    """Union of overlapping same-value runs of consecutive rows; labels 1…n in order of first run."""
    nr = len(col)
    parent = np.arange(nr).astype(np.int32)
    h = len(row_start) - 1
    for r in range(1, h):
        a, a_end = row_start[r - 1], row_start[r]
        b, b_end = row_start[r], row_start[r + 1]
        while a < a_end and b < b_end:
            a_stop = col[a + 1] if a + 1 < a_end else w
            b_stop = col[b + 1] if b + 1 < b_end else w
            if val[a] == val[b] and val[a] != 0:
                ra, rb = _find(parent, a), _find(parent, b)
                if ra != rb:  # the root is the earlier run: labels follow the raster order
                    if ra < rb:
                        parent[rb] = ra
                    else:
                        parent[ra] = rb
            if a_stop <= b_stop:
                a += 1
            if b_stop <= a_stop:
                b += 1
    label = np.zeros(nr, np.int32)
    n = 0
    for i in range(nr):
        if val[i] == 0:
            continue
        root = _find(parent, i)
        if root == i:
            n += 1
            label[i] = n
        else:
            label[i] = label[root]  # root < i: already labelled
    return label, n


@numba.njit(cache=True, nogil=True)
def _edges(
    row_start: np.ndarray, col: np.ndarray, label: np.ndarray, w: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shared boundary records (u < v, length): consecutive runs of a row, overlapping runs of two rows;
    repeats of the last neighbour of ``u`` are folded into its record."""
    # int32 records grown on demand: the folded records are a fraction of the 3 per run they are bounded by
    eu = np.empty(len(col) + 16, np.int32)
    ev = np.empty(len(col) + 16, np.int32)
    el = np.empty(len(col) + 16, np.int32)
    last_v = np.zeros(n + 1, np.int32)
    last_slot = np.zeros(n + 1, np.int32)
    m = 0
    h = len(row_start) - 1
    for r in range(h):
        # room for this row's records (one per run, two per run of the row above and this one), made here
        # and not per record: an array reassigned in the inner loops slows them threefold
        need = m + 2 * (row_start[r + 1] - row_start[r]) + (row_start[r] - row_start[r - 1] if r > 0 else 0)
        if need > len(eu):
            eu, ev, el = _grow_to(eu, need), _grow_to(ev, need), _grow_to(el, need)
        for i in range(row_start[r] + 1, row_start[r + 1]):
            u, v = label[i - 1], label[i]
            if u > 0 and v > 0 and u != v:
                lo, hi = min(u, v), max(u, v)
                if last_v[lo] == hi:
                    el[last_slot[lo]] += 1
                else:
                    eu[m], ev[m], el[m] = lo, hi, 1
                    last_v[lo], last_slot[lo] = hi, m
                    m += 1
        if r == 0:
            continue
        a, a_end = row_start[r - 1], row_start[r]
        b, b_end = row_start[r], row_start[r + 1]
        while a < a_end and b < b_end:
            a_stop = col[a + 1] if a + 1 < a_end else w
            b_stop = col[b + 1] if b + 1 < b_end else w
            u, v = label[a], label[b]
            if u > 0 and v > 0 and u != v:
                overlap = min(a_stop, b_stop) - max(col[a], col[b])
                lo, hi = min(u, v), max(u, v)
                if last_v[lo] == hi:
                    el[last_slot[lo]] += overlap
                else:
                    eu[m], ev[m], el[m] = lo, hi, overlap
                    last_v[lo], last_slot[lo] = hi, m
                    m += 1
            if a_stop <= b_stop:
                a += 1
            if b_stop <= a_stop:
                b += 1
    return eu[:m].astype(np.int64), ev[:m].astype(np.int64), el[:m].astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _widths(
    data: np.ndarray, row_start: np.ndarray, col: np.ndarray, label: np.ndarray, n: int, dist: np.ndarray, far: int
) -> np.ndarray:
    """Per label 1…n: 2·d + 2 px, d the largest chamfer distance of its pixels to its boundary pixels.
    ``dist``: (h + 2) × (w + 2) filled with ``far``, where the distances saturate (padded by one pixel of
    ``far`` on each side: no bounds tests in the scans). Sums in int32 (not the int64 numba would promote
    the buffer's bytes to: wider vectors), the boundary of a row marked first; each row's runs read their
    largest distance as soon as the backward pass has made it final."""
    h, w = data.shape
    edge = np.empty(w, np.bool_)
    step, diag = np.int32(CHAMFER_STEP), np.int32(CHAMFER_DIAG)
    for r in range(h):  # boundary pixels are 0; forward pass
        up = data[r - 1] if r > 0 else data[r]
        down = data[r + 1] if r + 1 < h else data[r]
        row = data[r]
        here = dist[r + 1]
        above = dist[r]
        for c in range(w):  # a 4-neighbour of another value (block edges are no boundary)
            edge[c] = (up[c] != row[c]) | (down[c] != row[c])
        for c in range(1, w):
            change = row[c - 1] != row[c]
            edge[c] |= change
            edge[c - 1] |= change
        # the terms from the row above (no dependency between columns: vectorised), then the left-to-right
        # term, the only sequential one
        for c in range(w):
            d = min(np.int32(above[c + 1]) + step, min(np.int32(above[c]) + diag, np.int32(above[c + 2]) + diag))
            here[c + 1] = 0 if edge[c] else min(d, far)
        last = np.int32(here[0])
        for c in range(1, w + 1):
            last = min(np.int32(here[c]), last + step)
            here[c] = last
    best = np.zeros(n + 1, np.int64)
    for r in range(h, 0, -1):  # backward pass, the same way
        here = dist[r]
        below = dist[r + 1]
        for c in range(1, w + 1):
            e = min(np.int32(below[c]) + step, min(np.int32(below[c + 1]) + diag, np.int32(below[c - 1]) + diag))
            here[c] = min(np.int32(here[c]), e)
        last = np.int32(here[w + 1])
        for c in range(w, 0, -1):
            last = min(np.int32(here[c]), last + step)
            here[c] = last
        end = row_start[r]
        for i in range(row_start[r - 1], end):  # block row r − 1 is final: the largest distance of its runs
            lab = label[i]
            if lab == 0:
                continue
            stop = col[i + 1] if i + 1 < end else w
            m = best[lab]
            for c in range(col[i] + 1, stop + 1):
                if here[c] > m:
                    m = here[c]
            best[lab] = m
    out = np.empty(n, np.float64)
    for lab in range(1, n + 1):
        out[lab - 1] = 2.0 * best[lab] / CHAMFER_STEP + 2.0
    return out


@numba.njit(cache=True, nogil=True)
def _stats(
    row_start: np.ndarray, col: np.ndarray, val: np.ndarray, label: np.ndarray, w: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    cls = np.zeros(n, np.uint16)
    area = np.zeros(n, np.int64)
    h = len(row_start) - 1
    for r in range(h):
        end = row_start[r + 1]
        for i in range(row_start[r], end):
            lab = label[i]
            if lab > 0:
                stop = col[i + 1] if i + 1 < end else w
                area[lab - 1] += stop - col[i]
                cls[lab - 1] = val[i]
    return cls, area


@numba.njit(cache=True, nogil=True)
def _border_rows(row_start: np.ndarray, col: np.ndarray, label: np.ndarray, w: int, r: int) -> np.ndarray:
    out = np.empty(w, np.int32)
    end = row_start[r + 1]
    for i in range(row_start[r], end):
        stop = col[i + 1] if i + 1 < end else w
        out[col[i] : stop] = label[i]
    return out


@numba.njit(cache=True, nogil=True)
def _border_cols(row_start: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = len(row_start) - 1
    left = np.empty(h, np.int32)
    right = np.empty(h, np.int32)
    for r in range(h):
        left[r] = label[row_start[r]]
        right[r] = label[row_start[r + 1] - 1]
    return left, right


def _width_buffer(h: int, w: int, width_cap_px: float | None) -> tuple[np.ndarray, int]:
    """The distance buffer of :func:`_widths`: uint8 (distances saturating at 255 thirds of a pixel, a
    width of 172 px) when no width above ``width_cap_px`` needs telling apart — half the memory of the
    uint16 one (saturating at 60 000 thirds, 40 002 px)."""
    if width_cap_px is not None and 2.0 * 255 / CHAMFER_STEP + 2.0 >= width_cap_px:
        return np.full((h + 2, w + 2), 255, np.uint8), 255
    return np.full((h + 2, w + 2), 60000, np.uint16), 60000


def block_components(data: np.ndarray, *, widths: bool = True, width_cap_px: float | None = None) -> BlockComponents:
    """Pass 1 on one block (uint8 or uint16 values, 0 = nodata): see the module docstring. Widths are
    exact (up to the chamfer's error) up to 40 000 px; with ``width_cap_px`` (the largest width threshold
    that will be compared with them), any width beyond it may read as a smaller one that is still beyond
    it (a smaller buffer)."""
    data = np.ascontiguousarray(data)
    h, w = data.shape
    row_start, col, val = _runs(data)
    label, n = _label_runs(row_start, col, val, w)
    cls, area = _stats(row_start, col, val, label, w, n)
    eu, ev, el = _edges(row_start, col, label, w, n)
    if widths:
        dist, far = _width_buffer(h, w, width_cap_px)
        wide = _widths(data, row_start, col, label, n, dist, far)
        del dist
    else:
        wide = np.zeros(n)
    left, right = _border_cols(row_start, label)
    runs = BlockRuns(w, row_start, col, label)
    return BlockComponents(
        runs,
        cls,
        area,
        wide,
        eu,
        ev,
        el,
        _border_rows(row_start, col, label, w, 0),
        _border_rows(row_start, col, label, w, h - 1),
        left,
        right,
    )


@numba.njit(cache=True, nogil=True)
def _inside(
    row_start: np.ndarray,
    col: np.ndarray,
    label: np.ndarray,
    w: int,
    n: int,
    zc: np.ndarray,
    k: int,
    row_off: int,
    col_off: int,
) -> np.ndarray:
    out = np.zeros(n, np.float64)
    h = len(row_start) - 1
    for r in range(h):
        cr = (row_off + r) // k
        end = row_start[r + 1]
        for i in range(row_start[r], end):
            lab = label[i]
            if lab == 0:
                continue
            x = col_off + col[i]
            stop = col_off + (col[i + 1] if i + 1 < end else w)
            while x < stop:
                cell = x // k
                nxt = min((cell + 1) * k, stop)
                if zc[cr, cell]:
                    out[lab - 1] += nxt - x
                x = nxt
    return out


def inside_counts(runs: BlockRuns, n: int, zc: np.ndarray, k: int, row_off: int, col_off: int) -> np.ndarray:
    """Per component (label − 1): its pixels inside the coarse zone construite ``zc`` (cells of k px)."""
    return _inside(runs.row_start, runs.col, runs.label, runs.width, n, zc, k, row_off, col_off)


@numba.njit(cache=True, nogil=True)
def _paint(row_start: np.ndarray, col: np.ndarray, label: np.ndarray, w: int, lut: np.ndarray, out: np.ndarray) -> None:
    h = len(row_start) - 1
    for r in range(h):
        end = row_start[r + 1]
        for i in range(row_start[r], end):
            stop = col[i + 1] if i + 1 < end else w
            value = lut[label[i]]
            for c in range(col[i], stop):
                out[r, c] = value


def paint(runs: BlockRuns, lut: np.ndarray, dtype: type = np.int32) -> np.ndarray:
    """The block as ``lut[label]`` (``lut[0]`` for nodata): e.g. its final region ids."""
    out = np.empty((runs.height, runs.width), dtype=dtype)
    _paint(runs.row_start, runs.col, runs.label, runs.width, lut.astype(dtype, copy=False), out)
    return out


@numba.njit(cache=True, nogil=True)
def _relabel(
    row_start: np.ndarray, col: np.ndarray, label: np.ndarray, lut: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = len(row_start) - 1
    new_start = np.empty(h + 1, np.int64)
    new_col = np.empty(len(col), np.int32)
    new_label = np.empty(len(col), np.int32)
    m = 0
    for r in range(h):
        new_start[r] = m
        for i in range(row_start[r], row_start[r + 1]):
            lab = lut[label[i]]
            if i > row_start[r] and new_label[m - 1] == lab:
                continue  # same group as the run before: one run
            new_col[m] = col[i]
            new_label[m] = lab
            m += 1
    new_start[h] = m
    return new_start, new_col[:m].copy(), new_label[:m].copy()


def relabel_runs(runs: BlockRuns, lut: np.ndarray) -> BlockRuns:
    """The runs with labels ``lut[label]``, consecutive runs of the same new label joined."""
    row_start, col, label = _relabel(runs.row_start, runs.col, runs.label, lut.astype(np.int32))
    return BlockRuns(runs.width, row_start, col, label)


@numba.njit(cache=True, nogil=True)
def _built_cells(
    data: np.ndarray,
    is_built: np.ndarray,
    row_off: int,
    col_off: int,
    k: int,
    out: np.ndarray,
    out_r0: int,
    out_c0: int,
) -> None:
    h, w = data.shape
    n = len(is_built)
    for r in range(h):
        cr = (row_off + r) // k - out_r0
        x = 0
        while x < w:  # cell by cell: no division per pixel, and a cell already marked is not looked at
            cell = (col_off + x) // k
            stop = min(w, (cell + 1) * k - col_off)
            cc = cell - out_c0
            if not out[cr, cc]:
                for c in range(x, stop):
                    v = data[r, c]
                    if v < n and is_built[v]:
                        out[cr, cc] = True
                        break
            x = stop


def mark_built(
    data: np.ndarray,
    built_values: tuple[int, ...],
    row_off: int,
    col_off: int,
    k: int,
    out: np.ndarray,
    out_r0: int = 0,
    out_c0: int = 0,
) -> None:
    """Set the cells of ``out`` (a coarse grid of k-px cells whose first cell is (out_r0, out_c0)) that
    hold a pixel of ``built_values`` in ``data`` (placed at row_off, col_off)."""
    if not built_values:
        return
    is_built = np.zeros(max(built_values) + 1, dtype=bool)
    is_built[list(built_values)] = True
    _built_cells(np.ascontiguousarray(data), is_built, row_off, col_off, k, out, out_r0, out_c0)


# --- small graph and grid helpers (numba: no scipy in the vectoriser's process) -----------------------------


@numba.njit(cache=True, nogil=True)
def _connected(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    parent = np.arange(n)
    for e in range(len(u)):
        a, b = _find(parent, u[e]), _find(parent, v[e])
        if a != b:  # the root is the smaller node
            if a < b:
                parent[b] = a
            else:
                parent[a] = b
    out = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        root = _find(parent, i)
        if root == i:
            out[i] = m
            m += 1
        else:
            out[i] = out[root]  # root < i: already numbered
    return out


@numba.njit(cache=True, nogil=True)
def _stable_order_by(key: np.ndarray, order: np.ndarray, m: int) -> np.ndarray:
    """``order`` (indices into ``key``) stably re-ordered by ``key`` (values 0…m−1): a counting sort."""
    pos = np.zeros(m + 1, np.int64)
    for t in order:
        pos[key[t] + 1] += 1
    for g in range(m):
        pos[g + 1] += pos[g]
    out = np.empty(len(order), np.int64)
    for t in order:
        out[pos[key[t]]] = t
        pos[key[t]] += 1
    return out


@numba.njit(cache=True, nogil=True)
def _contract(
    mapping: np.ndarray,
    m: int,
    area: np.ndarray,
    inside: np.ndarray,
    wide: np.ndarray,
    frozen: np.ndarray,
    cls: np.ndarray,
    key: np.ndarray,
    largest: bool,
    eu: np.ndarray,
    ev: np.ndarray,
    elen: np.ndarray,
):  # type: ignore[no-untyped-def]
    n = len(mapping)
    g_area = np.zeros(m, np.int64)
    g_inside = np.zeros(m, np.float64)
    g_wide = np.zeros(m if len(wide) else 0, np.float64)
    g_frozen = np.zeros(m if len(frozen) else 0, np.bool_)
    g_cls = np.zeros(m, np.uint16)
    best = np.full(m, -1, np.int64)
    for i in range(n):  # in index order: the same float sums as np.bincount
        g = mapping[i]
        g_area[g] += area[i]
        g_inside[g] += inside[i]
        if len(wide) and wide[i] > g_wide[g]:
            g_wide[g] = wide[i]
        if len(frozen) and frozen[i]:
            g_frozen[g] = True
        if largest:
            b = best[g]
            if b < 0 or key[i] > key[b]:  # ties: the lowest index, met first
                best[g] = i
        else:
            g_cls[g] = cls[i]  # "first": the members share their class; the last one written, as numpy's
    if largest:
        for g in range(m):
            if best[g] >= 0:
                g_cls[g] = cls[best[g]]
    # edges between groups, aggregated in (lo, hi) order: two stable counting sorts, by hi then by lo
    lo = np.empty(len(eu), np.int64)
    hi = np.empty(len(eu), np.int64)
    ln = np.empty(len(eu), np.int64)
    k = 0
    for e in range(len(eu)):
        u, v = mapping[eu[e]], mapping[ev[e]]
        if u != v:
            lo[k], hi[k], ln[k] = min(u, v), max(u, v), elen[e]
            k += 1
    order = _stable_order_by(lo, _stable_order_by(hi, np.arange(k), m), m)
    out_u = np.empty(k, np.int64)
    out_v = np.empty(k, np.int64)
    out_l = np.zeros(k, np.int64)
    r = -1
    for j in range(k):
        t = order[j]
        if r < 0 or lo[t] != out_u[r] or hi[t] != out_v[r]:
            r += 1
            out_u[r], out_v[r] = lo[t], hi[t]
        out_l[r] += ln[t]
    r += 1
    return g_cls, g_area, g_inside, g_wide, g_frozen, out_u[:r].copy(), out_v[:r].copy(), out_l[:r].copy()


def contract_graph(
    mapping: np.ndarray,
    cls: np.ndarray,
    area: np.ndarray,
    inside: np.ndarray,
    wide: np.ndarray | None,
    frozen: np.ndarray | None,
    eu: np.ndarray,
    ev: np.ndarray,
    elen: np.ndarray,
    key: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """The graph of the groups ``mapping`` (node → group 0…m−1) in one pass over nodes and edges: each group's
    class (of its member of largest ``key`` — ties: the lowest node —, or, without ``key``, of its members,
    which share it), area and zone construite share (sums), width (widest member), frozen (any); its edges
    (lo < hi) in ascending order with their lengths summed — what sorting the edge keys and
    ``np.add.reduceat`` give, without the sort."""
    m = int(mapping.max()) + 1 if len(mapping) else 0
    g_cls, g_area, g_inside, g_wide, g_frozen, gu, gv, gl = _contract(
        np.asarray(mapping, np.int64),
        m,
        np.asarray(area, np.int64),
        np.asarray(inside, np.float64),
        np.zeros(0) if wide is None else np.asarray(wide, np.float64),
        np.zeros(0, np.bool_) if frozen is None else np.asarray(frozen, np.bool_),
        np.asarray(cls, np.uint16),
        np.zeros(0) if key is None else np.asarray(key, np.float64),
        key is not None,
        np.asarray(eu, np.int64),
        np.asarray(ev, np.int64),
        np.asarray(elen, np.int64),
    )
    return g_cls, g_area, g_inside, None if wide is None else g_wide, None if frozen is None else g_frozen, gu, gv, gl


def connected_labels(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Node → component (0…m−1) of the undirected graph with edges (u, v), numbered in the order of their
    smallest node — as ``scipy.sparse.csgraph.connected_components`` numbers them."""
    return _connected(n, np.asarray(u, np.int64), np.asarray(v, np.int64))


@numba.njit(cache=True, nogil=True)
def _edt_line(f: np.ndarray, d: np.ndarray, v: np.ndarray, z: np.ndarray) -> None:
    """Felzenszwalb & Huttenlocher's lower envelope of parabolas: d[q] = min_p (q − p)² + f[p]."""
    n = len(f)
    k = 0
    v[0] = 0
    z[0] = -1e300
    z[1] = 1e300
    for q in range(1, n):
        s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * q - 2.0 * v[k])
        while s <= z[k]:
            k -= 1
            s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * q - 2.0 * v[k])
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = 1e300
    k = 0
    for q in range(n):
        while z[k + 1] < q:
            k += 1
        d[q] = (q - v[k]) * (q - v[k]) + f[v[k]]


@numba.njit(cache=True, nogil=True)
def _edt_squared(background: np.ndarray) -> np.ndarray:
    h, w = background.shape
    far = 1e20  # no background in the line (yet): finite, so that the envelope's arithmetic stays exact
    out = np.empty((h, w), np.float64)
    n = max(h, w)
    f = np.empty(n, np.float64)
    d = np.empty(n, np.float64)
    v = np.empty(n, np.int64)
    z = np.empty(n + 1, np.float64)
    for x in range(w):  # columns
        for y in range(h):
            f[y] = 0.0 if background[y, x] else far
        _edt_line(f[:h], d[:h], v, z)
        for y in range(h):
            out[y, x] = d[y]
    for y in range(h):  # rows
        for x in range(w):
            f[x] = out[y, x]
        _edt_line(f[:w], d[:w], v, z)
        for x in range(w):
            out[y, x] = d[x]
    return out


def edt_squared(background: np.ndarray) -> np.ndarray:
    """The exact squared Euclidean distance of every cell to the nearest ``background`` cell (float64,
    integers: ``np.sqrt`` of it is ``scipy.ndimage.distance_transform_edt(~background)`` to the last bit);
    1e20 or more where there is no background at all."""
    return _edt_squared(np.ascontiguousarray(background, dtype=np.bool_))


# --- the sieve: each small node's chosen neighbour ----------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _choose(
    eu: np.ndarray,
    ev: np.ndarray,
    elen: np.ndarray,
    small: np.ndarray,
    cls: np.ndarray,
    area: np.ndarray,
    network: np.ndarray,
    avoid_small: bool,
) -> np.ndarray:
    best = np.full(len(small), -1, np.int64)
    best_len = np.zeros(len(small), np.int64)
    for half in range(2):  # the edges as (eu → ev), then as (ev → eu): ties go to the first one met
        for e in range(len(eu)):
            s, d = (eu[e], ev[e]) if half == 0 else (ev[e], eu[e])
            if not small[s] or cls[d] == 0:
                continue
            b = best[s]
            if b >= 0:
                if avoid_small and small[d] != small[b]:
                    if small[d]:
                        continue
                elif network[cls[d]] != network[cls[b]]:
                    if network[cls[d]]:
                        continue
                elif elen[e] != best_len[s]:
                    if elen[e] < best_len[s]:
                        continue
                elif area[d] <= area[b]:
                    continue
            best[s] = d
            best_len[s] = elen[e]
    return best


def choose_neighbours(
    eu: np.ndarray,
    ev: np.ndarray,
    elen: np.ndarray,
    small: np.ndarray,
    cls: np.ndarray,
    area: np.ndarray,
    network_values: tuple[int, ...],
    avoid_small: bool,
) -> np.ndarray:
    """For each ``small`` node, the neighbour it joins (−1: none; never nodata): (with ``avoid_small``, one
    that is not small itself first,) a non-network one, then the longest shared boundary, then the
    largest; ties: the first edge met in (eu → ev) then (ev → eu) order — what a stable lexicographic sort
    of the edges on these keys gives, in one pass."""
    network = np.zeros(int(cls.max(initial=0)) + 1, np.bool_)
    for v in network_values:
        if v < len(network):
            network[v] = True
    return _choose(eu, ev, elen, small, cls, area.astype(np.int64, copy=False), network, avoid_small)


# --- polygons: boundary tracing ----------------------------------------------------------------------------

_DX = np.array([0, 1, 0, -1], np.int64)  # up, right, down, left (rows grow downwards)
_DY = np.array([-1, 0, 1, 0], np.int64)


@numba.njit(cache=True, nogil=True)
def _run_at(row_start: np.ndarray, col: np.ndarray, y: int, x: int) -> int:
    """The run of row y that holds column x (binary search: the runs are few per row after the sieve)."""
    lo, hi = row_start[y], row_start[y + 1] - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if col[mid] <= x:
            lo = mid
        else:
            hi = mid - 1
    return lo


@numba.njit(cache=True, nogil=True)
def _run_near(row_start: np.ndarray, col: np.ndarray, y: int, x: int, hint: np.ndarray) -> int:
    """:func:`_run_at`, looked for first at the run of row y last found (``hint``, updated) and its two
    neighbours: a ring walks one pixel at a time, so it is nearly always one of them."""
    lo, hi = row_start[y], row_start[y + 1] - 1
    i = hint[y]
    for j in (i, i + 1, i - 1):
        if lo <= j <= hi and col[j] <= x and (j == hi or col[j + 1] > x):
            hint[y] = j
            return j
    j = _run_at(row_start, col, y, x)
    hint[y] = j
    return j


@numba.njit(cache=True, nogil=True)
def _cell_near(
    row_start: np.ndarray, col: np.ndarray, piece: np.ndarray, h: int, w: int, y: int, x: int, hint: np.ndarray
) -> int:
    if 0 <= y < h and 0 <= x < w:
        return piece[_run_near(row_start, col, y, x, hint)]
    return 0


@numba.njit(cache=True, nogil=True)
def _cell(row_start: np.ndarray, col: np.ndarray, piece: np.ndarray, h: int, w: int, y: int, x: int) -> int:
    if 0 <= y < h and 0 <= x < w:
        return piece[_run_at(row_start, col, y, x)]
    return 0


@numba.njit(cache=True, nogil=True)
def _grow_to(a: np.ndarray, size: int) -> np.ndarray:
    """``a`` with room for at least ``size`` items (twice as long at least, its items kept)."""
    if size <= len(a):
        return a
    b = np.empty(max(2 * len(a), size), a.dtype)
    b[: len(a)] = a
    return b


@numba.njit(cache=True, nogil=True)
def _left_cell(
    row_start: np.ndarray, col: np.ndarray, piece: np.ndarray, h: int, w: int, x: int, y: int, d: int
) -> int:
    """The cell on the left of the edge that leaves corner (x, y) in direction d."""
    if d == 0:
        return _cell(row_start, col, piece, h, w, y - 1, x - 1)
    if d == 1:
        return _cell(row_start, col, piece, h, w, y - 1, x)
    if d == 2:
        return _cell(row_start, col, piece, h, w, y, x)
    return _cell(row_start, col, piece, h, w, y, x - 1)


@numba.njit(cache=True, nogil=True)
def _trace(
    row_start: np.ndarray, col: np.ndarray, piece: np.ndarray, w: int, every_corner: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every ring of every piece, followed with the piece on its right.

    A ring starts at the left side of a run (every ring has such an edge: the up edges of a ring with its
    piece on the right are left sides of the piece's cells). At each corner: turn right when the cell
    ahead on the right is not the piece, else left when the cell ahead on the left is, else straight —
    4-connectivity: two cells of a piece that touch by a corner only are not joined there (the ring goes
    round one of them), so rings never cross or touch themselves.

    Vertices: a corner is kept where the ring turns, where the piece on its left changes (a junction of
    three pieces: the neighbours have a vertex there too) and on the block's edges (the pieces of the next
    block, united with these across the seam, cut them anywhere) — the fewest vertices of a correctly
    noded coverage; ``every_corner`` keeps one at every pixel corner instead.

    The cells are looked up in the runs (the piece of each run), never painted: no block-sized array."""
    h = len(row_start) - 1
    # up edges already followed: an up edge with the piece on its right is the left side of a run
    visited = np.zeros(len(col), np.uint8)
    hint = row_start[:-1].copy()  # per row, the run last looked up (:func:`_run_near`)
    xs = np.empty(1 << 16, np.int32)
    ys = np.empty(1 << 16, np.int32)
    # a ring starts at a run's left side, each at its own: no more rings than runs
    starts = np.empty(len(col) + 1, np.int64)
    ring_piece = np.empty(len(col), np.int64)
    ring_area = np.empty(len(col), np.int64)
    ring_pinch = np.zeros(len(col), np.bool_)
    m = 0
    rings = 0
    for r in range(h):
        for i in range(row_start[r], row_start[r + 1]):
            p = piece[i]
            if p == 0 or visited[i]:
                continue
            starts[rings] = m
            while True:  # the vertex buffers grown here, never in the walk: arrays reassigned in a loop slow it
                end, area, pinch = _walk(row_start, col, piece, h, w, np.int64(col[i]), np.int64(r + 1), p,
                                         every_corner, visited, xs, ys, m, hint)  # fmt: skip
                if end >= 0:
                    break
                xs, ys = _grow_to(xs, 2 * len(xs)), _grow_to(ys, 2 * len(ys))
            m = end
            ring_piece[rings] = p
            ring_area[rings] = area
            ring_pinch[rings] = pinch
            rings += 1
    starts[rings] = m
    return (
        xs[:m].copy(),
        ys[:m].copy(),
        starts[: rings + 1].copy(),
        ring_piece[:rings].copy(),
        ring_area[:rings].copy(),
        ring_pinch[:rings].copy(),
    )


@numba.njit(cache=True, nogil=True)
def _walk(
    row_start: np.ndarray,
    col: np.ndarray,
    piece: np.ndarray,
    h: int,
    w: int,
    x0: int,
    y0: int,
    p: int,
    every_corner: bool,
    visited: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    m: int,
    hint: np.ndarray,
) -> tuple[int, int, bool]:
    """One ring of piece ``p`` from corner (x0, y0) going up (:func:`_trace`), its vertices written from
    ``xs[m]``, ``ys[m]``: (the end of its vertices, twice its signed area, whether it pinches); an end of −1
    when the buffers are full — walked again with more room, it marks the same edges visited."""
    start = m
    cap = len(xs)
    if m >= cap:
        return -1, 0, False
    xs[m], ys[m] = x0, y0  # kept for now; dropped at the end if the ring goes straight through it
    m += 1
    x, y, d = x0, y0, 0
    left = _left_cell(row_start, col, piece, h, w, x0, y0, 0)
    area = np.int64(0)
    pinch = False
    while True:
        nx, ny = x + _DX[d], y + _DY[d]
        if d == 0:
            visited[_run_near(row_start, col, ny, x, hint)] = 1
        area += x * ny - nx * y
        x, y = nx, ny
        # the four cells around the corner: above-left, above-right, below-left, below-right
        ul = _cell_near(row_start, col, piece, h, w, y - 1, x - 1, hint)
        ur = _cell_near(row_start, col, piece, h, w, y - 1, x, hint)
        dl = _cell_near(row_start, col, piece, h, w, y, x - 1, hint)
        dr = _cell_near(row_start, col, piece, h, w, y, x, hint)
        if d == 0:
            ahead_left, ahead_right = ul, ur
        elif d == 1:
            ahead_left, ahead_right = ur, dr
        elif d == 2:
            ahead_left, ahead_right = dr, dl
        else:
            ahead_left, ahead_right = dl, ul
        turn = d
        if ahead_right != p:
            if ahead_left == p:  # cells of the piece touching by a corner: the ring may come back here
                pinch = True
            turn = (d + 1) % 4
        elif ahead_left == p:
            turn = (d + 3) % 4
        next_left = (ul, ur, dr, dl)[turn]  # the cell on the left of the edge leaving in `turn`
        keep = every_corner or turn != d or next_left != left or x == 0 or x == w or y == 0 or y == h
        d, left = turn, next_left
        if x == x0 and y == y0 and d == 0:
            if not keep:  # the start is no vertex: the ring starts and closes at its next one
                for j in range(start, m - 1):
                    xs[j], ys[j] = xs[j + 1], ys[j + 1]
                m -= 1
                x, y = xs[start], ys[start]
            if m >= cap:
                return -1, 0, False
            xs[m], ys[m] = x, y
            m += 1
            return m, area, pinch
        if keep:
            if m >= cap:
                return -1, 0, False
            xs[m], ys[m] = x, y
            m += 1


def _split_at_pinches(xy: np.ndarray) -> list[np.ndarray]:
    """A closed ring that passes twice through a corner, cut there into simple closed rings (e.g. a shell
    and the hole that touches it at that corner, as OGC validity wants)."""
    out = []
    path: list[tuple[int, int]] = []
    seen: dict[tuple[int, int], int] = {}
    for v in map(tuple, xy[:-1].tolist()):
        if v in seen:
            i = seen[v]
            out.append(np.array([*path[i:], v], dtype=np.float64))
            for u in path[i + 1 :]:
                del seen[u]
            del path[i + 1 :]
        else:
            seen[v] = len(path)
            path.append(v)
    out.append(np.array([*path, path[0]], dtype=np.float64))
    return out


def _shoelace2(xy: np.ndarray) -> float:
    return float(np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]))


@numba.njit(cache=True, nogil=True)
def _label_boxes(
    row_start: np.ndarray, col: np.ndarray, label: np.ndarray, w: int, slot: np.ndarray, k: int
) -> np.ndarray:
    out = np.zeros((k, 5), np.int64)  # pixels, first row, last row, first column, last column
    out[:, 1] = out[:, 3] = 1 << 62
    h = len(row_start) - 1
    for r in range(h):
        end = row_start[r + 1]
        for i in range(row_start[r], end):
            s = slot[label[i]]
            if s < 0:
                continue
            stop = col[i + 1] if i + 1 < end else w
            out[s, 0] += stop - col[i]
            out[s, 1] = min(out[s, 1], r)
            out[s, 2] = max(out[s, 2], r)
            out[s, 3] = min(out[s, 3], col[i])
            out[s, 4] = max(out[s, 4], stop - 1)
    return out


@numba.njit(cache=True, nogil=True)
def _paint_window(
    row_start: np.ndarray, col: np.ndarray, label: np.ndarray, w: int, y0: int, x0: int, out: np.ndarray
) -> None:
    wh, ww = out.shape
    h = len(row_start) - 1
    for y in range(max(y0, 0), min(y0 + wh, h)):
        end = row_start[y + 1]
        for i in range(row_start[y], end):
            start = max(col[i], x0)
            stop = min(col[i + 1] if i + 1 < end else w, x0 + ww)
            for x in range(start, stop):
                out[y - y0, x - x0] = label[i]


def paint_window(runs: BlockRuns, y0: int, x0: int, height: int, width: int) -> np.ndarray:
    """The labels of a window of the block (int32; it may reach beyond the block: 0 there)."""
    out = np.zeros((height, width), np.int32)
    _paint_window(runs.row_start, runs.col, runs.label, runs.width, y0, x0, out)
    return out


@numba.njit(cache=True, nogil=True)
def _override(
    row_start: np.ndarray,
    col: np.ndarray,
    label: np.ndarray,
    w: int,
    rows: np.ndarray,
    cols: np.ndarray,
    new: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = len(row_start) - 1
    out_start = np.empty(h + 1, np.int64)
    out_col = np.empty(len(col) + 2 * len(rows), np.int32)
    out_label = np.empty(len(col) + 2 * len(rows), np.int32)
    line = np.empty(w, np.int32)
    m = 0
    k = 0  # overrides sorted by row
    for r in range(h):
        out_start[r] = m
        end = row_start[r + 1]
        if k >= len(rows) or rows[k] != r:  # untouched row: its runs as they are
            for i in range(row_start[r], end):
                out_col[m], out_label[m] = col[i], label[i]
                m += 1
            continue
        for i in range(row_start[r], end):
            line[col[i] : col[i + 1] if i + 1 < end else w] = label[i]
        while k < len(rows) and rows[k] == r:
            line[cols[k]] = new[k]
            k += 1
        out_col[m], out_label[m] = 0, line[0]
        m += 1
        for c in range(1, w):
            if line[c] != line[c - 1]:
                out_col[m], out_label[m] = c, line[c]
                m += 1
    out_start[h] = m
    return out_start, out_col[:m].copy(), out_label[:m].copy()


def override_runs(runs: BlockRuns, rows: np.ndarray, cols: np.ndarray, labels: np.ndarray) -> BlockRuns:
    """The runs with the pixels (rows, cols) set to ``labels``."""
    order = np.argsort(rows, kind="stable")
    start, col, label = _override(
        runs.row_start,
        runs.col,
        runs.label,
        runs.width,
        rows[order].astype(np.int64),
        cols[order].astype(np.int64),
        labels[order].astype(np.int32),
    )
    return BlockRuns(runs.width, start, col, label)


def label_boxes(runs: BlockRuns, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """For each of ``labels`` (all below ``n_labels``): its pixels in the block and its bounding box,
    rows (first, last) and columns (first, last); one row of 5 per label, in the order given."""
    slot = np.full(n_labels, -1, np.int32)
    slot[labels] = np.arange(len(labels), dtype=np.int32)
    return _label_boxes(runs.row_start, runs.col, runs.label, runs.width, slot, len(labels))


def trace_polygons(
    runs: BlockRuns, lut: np.ndarray, row_off: int = 0, col_off: int = 0, *, every_corner: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The polygons of ``lut[label]`` (0: none) over the block: :func:`trace_regions` of the runs relabelled."""
    return trace_regions(relabel_runs(runs, lut), row_off, col_off, every_corner=every_corner)


def trace_regions(
    merged: BlockRuns,
    row_off: int = 0,
    col_off: int = 0,
    *,
    every_corner: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The polygons of the runs' labels (0: none) over the block, one per 4-connected piece, in pixel
    coordinates of the mosaic (block at row_off, col_off), with a vertex where their boundaries turn, at
    junctions and along the block's edges (a correctly noded coverage: neighbours share their vertices,
    and so do pieces on both sides of a seam) — or at every pixel corner (``every_corner``); and the
    label of each.

    What ``rasterio.features.shapes`` gives, from the runs: the pixels are looked at once to paint the
    pieces, then only the boundaries are walked."""
    import shapely

    piece, n = _label_runs(merged.row_start, merged.col, merged.label, merged.width)
    if n == 0:
        return np.zeros(0, dtype=object), np.zeros(0, np.int64)
    piece_value = np.zeros(n + 1, np.int64)
    piece_value[piece] = merged.label
    xs, ys, starts, ring_piece, ring_area, ring_pinch = _trace(
        merged.row_start, merged.col, piece, merged.width, every_corner
    )
    vertex_ring = np.repeat(np.arange(len(ring_piece)), np.diff(starts))
    coords = np.column_stack([xs.astype(np.float64) + col_off, ys.astype(np.float64) + row_off])
    rings = shapely.linearrings(coords, indices=vertex_ring)
    pinched = np.flatnonzero(ring_pinch)
    if len(pinched):  # rare: rings through a corner twice, split into simple ones
        extra_rings, extra_piece, extra_area = [], [], []
        for k in pinched:
            parts = _split_at_pinches(coords[starts[k] : starts[k + 1]])
            extra_rings.extend(shapely.linearrings(part) for part in parts)
            extra_piece.extend([ring_piece[k]] * len(parts))
            extra_area.extend(_shoelace2(part) for part in parts)
        keep = ~ring_pinch
        rings = np.concatenate([rings[keep], np.array(extra_rings, dtype=object)])
        ring_piece = np.concatenate([ring_piece[keep], np.array(extra_piece, dtype=np.int64)])
        ring_area = np.concatenate([ring_area[keep], np.array(extra_area)])
    order = np.lexsort((ring_area < 0, ring_piece))  # per piece: its shell (positive area), then its holes
    polygons = shapely.polygons(rings[order], indices=ring_piece[order] - 1)
    return polygons, piece_value[1:]
