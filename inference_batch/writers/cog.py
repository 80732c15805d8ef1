"""The one COG writer of the batch: GDAL's COG driver (512-px blocks, BigTIFF when needed, overviews
by the resampling given), used by predict, render and synth alike.

GDAL writes the overviews of a COG to ``{dst}.ovr.tmp`` files beside its destination: the copy is made
in a per-run scratch folder (:mod:`inference_batch.scratch`) and moved into place, so that a kill
midway leaves nothing beside the product keys.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import rasterio
import rasterio.shutil

from inference_batch.scratch import scratch


def copy_to_cog(src: Any, dst: str | Path, *, resampling: str, compress: str = "DEFLATE", blocksize: int = 512,
                **options: Any) -> None:
    """Copy a raster (path or open dataset) to a COG at ``dst``; ``options`` are COG creation options."""
    # bounded memory whatever the RAM; rasterio.Env takes GDAL_CACHEMAX in bytes (256 alone would be 256 bytes)
    with scratch("cog") as tmp, rasterio.Env(GDAL_CACHEMAX=256 * 1024 * 1024):
        out = tmp / f"cog{''.join(Path(dst).suffixes) or '.tif'}"
        rasterio.shutil.copy(src, str(out), driver="COG", COMPRESS=compress, BLOCKSIZE=blocksize,
                             OVERVIEW_RESAMPLING=resampling, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS", **options)
        shutil.move(out, dst)
