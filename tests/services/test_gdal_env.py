"""GDAL options per source: the per-handle VSI read cache only for network reads (it multiplied the
server's memory by threads × open datasets on local files, for reads the OS page cache already serves)."""

from __future__ import annotations

from services.assets import gdal_env


def test_vsi_cache_only_for_remote_reads() -> None:
    remote = gdal_env("/vsis3/bucket/data/couverture/D077/2021/couverture_D077_2021.tif")
    local = gdal_env("/srv/data/couverture/D077/2021/couverture_D077_2021.tif")
    assert remote["VSI_CACHE"] == "TRUE" and "VSI_CACHE_SIZE" in remote
    assert "VSI_CACHE" not in local and "VSI_CACHE_SIZE" not in local
    assert local["GDAL_DISABLE_READDIR_ON_OPEN"] == remote["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert "GDAL_CACHEMAX" not in local and "GDAL_CACHEMAX" not in remote  # process-wide, set at start
