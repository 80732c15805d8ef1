"""The download archive's zip: members byte for byte the files given, the GeoPackage and texts deflated at
``ZIP_LEVEL`` (chosen for speed, see archive.py), the COGs stored as they are."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from inference_batch.products.archive import ZIP_LEVEL, write_zip


def _raw_deflate(data: bytes, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def test_members_keep_their_bytes_and_are_deflated_at_the_chosen_level(tmp_path: Path) -> None:
    # compressible but not trivially: a level changes the size of this deflate stream
    gpkg = tmp_path / "a.gpkg"
    gpkg.write_bytes(b"".join(b"row %d value %d;" % (i, (i * 7919) % 1000) for i in range(20_000)))
    cog = tmp_path / "a.tif"
    cog.write_bytes(bytes(range(256)) * 40)
    out = tmp_path / "out.zip"
    write_zip(out, "F", [("a.gpkg", gpkg), ("A.tif", cog)], "sums\n")
    assert len(_raw_deflate(gpkg.read_bytes(), ZIP_LEVEL)) != len(_raw_deflate(gpkg.read_bytes(), 6))
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["F/a.gpkg", "F/A.tif", "F/SHA256SUMS"]
        assert zf.read("F/a.gpkg") == gpkg.read_bytes() and zf.read("F/A.tif") == cog.read_bytes()
        info = zf.getinfo("F/a.gpkg")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.compress_size == len(_raw_deflate(gpkg.read_bytes(), ZIP_LEVEL))
        assert zf.getinfo("F/A.tif").compress_type == zipfile.ZIP_STORED
        assert zf.testzip() is None


def test_the_same_files_give_the_same_archive_bytes(tmp_path: Path) -> None:
    gpkg = tmp_path / "a.gpkg"
    gpkg.write_bytes(b"layer " * 5000)
    first, second = tmp_path / "1.zip", tmp_path / "2.zip"
    write_zip(first, "F", [("a.gpkg", gpkg)], "s\n")
    write_zip(second, "F", [("a.gpkg", gpkg)], "s\n")
    assert first.read_bytes() == second.read_bytes()
