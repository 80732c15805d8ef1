"""``ocsge train | predict | vectorize | rules | qa``: thin click wrappers over the production functions.

Heavy imports (torch, rasterio, geopandas) happen inside the commands so that ``ocsge --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from inference_batch.freshness import fingerprint, is_up_to_date, mark_done
from ocsge.products import block_prefix, product_key
from ocsge.progress import done, step

SHIPPED_MODEL = Path(__file__).parent / "weights" / "ocsge-unet-small-synth.safetensors"


def _storage(root: str | None):  # type: ignore[no-untyped-def]
    from ocsge.storage import open_storage

    return open_storage(root)


def _model_path(model: str | None) -> Path:
    from ocsge.errors import OcsgeError

    if model:
        return Path(model)
    if not SHIPPED_MODEL.is_file():
        raise OcsgeError(f"no --model given and the shipped model {SHIPPED_MODEL} is missing")
    return SHIPPED_MODEL


dep_option = click.option("--departement", "--dep", "-d", "departement", required=True,
                          help="Département code (e.g. 77, 2A, S01).")
year_option = click.option("--millesime", "--year", "-y", "millesime", required=True, type=int,
                           help="Millésime (survey year).")
root_option = click.option("--root", default=None, help="Storage root (folder or s3://…); default OCSGE_STORAGE_ROOT.")
force_option = click.option("--force", is_flag=True, help="Redo the step even if its output is up to date.")


@click.command("predict")
@dep_option
@year_option
@root_option
@click.option("--model", "-m", default=None, help="Model file (.safetensors/.pt ours, or IGN .pth/.ckpt/.safetensors).")
@click.option("--rgb", default=None, help="RGB ortho-image (default: the stored imagery of --dep/--year).")
@click.option("--irc", default=None, help="IRC ortho-image (NIR is its first band).")
@click.option("--dsm", default=None, help="Digital surface model (any resolution, same CRS).")
@click.option("--dtm", default=None, help="Digital terrain model (any resolution, same CRS).")
@click.option("--height", "height_path", default=None, help="Height above ground (DSM − DTM, metres).")
@click.option("--laz", multiple=True, help="Classified LiDAR HD tile(s), rasterised to DSM − DTM.")
@click.option("--stack", default=None, help="One uint8 raster with bands R, G, B, NIR[, E] (FLAIR layout).")
@click.option("--zero-elevation", is_flag=True, help="Feed 0 as elevation when none exists (degrades the map).")
@click.option("--mode", type=click.Choice(["centre", "blend"]), default="centre", show_default=True,
              help="Combine overlapping tiles by centre crop (IGN) or weighted blending.")
@click.option("--tile", default=512, show_default=True, help="Tile size in pixels.")
@click.option("--margin", default=64, show_default=True, help="Overlap margin in pixels on each side.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--workers", default=None, type=int, help="DataLoader workers (default: spare cores, ≤ 8).")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model.")
@click.option("--block-size", default=8192, show_default=True, help="Block side in pixels (unit of work).")
@click.option("--block", "blocks", multiple=True, help="Only these block ids (e.g. r000c001).")
@click.option("--force", is_flag=True, help="Recompute blocks that are already done.")
@click.option("--report", "report_path", default=None, help="Write the run report (JSON) here.")
def predict(departement: str, millesime: int, root: str | None, model: str | None, rgb: str | None,
            irc: str | None, dsm: str | None, dtm: str | None, height_path: str | None, laz: tuple[str, ...],
            stack: str | None, zero_elevation: bool, mode: str, tile: int, margin: int, batch_size: int,
            workers: int | None, device: str, precision: str, compile_model: bool, block_size: int,
            blocks: tuple[str, ...], force: bool, report_path: str | None) -> None:
    """Predict couverture on a département's imagery: per-block class and confidence COGs.

    AWS_BATCH_JOB_ARRAY_INDEX, when set, selects one block; otherwise all blocks run in turn and
    finished blocks are skipped (a killed job resumes).
    """
    from inference_batch.production.inputs import ImagerySources
    from inference_batch.production.predict import (
        PredictOptions,
        array_index_from_env,
        sources_from_storage,
    )
    from inference_batch.production.predict import (
        predict as run_predict,
    )

    storage = _storage(root)
    if rgb or stack:
        sources = ImagerySources(rgb=rgb, irc=irc, dsm=dsm, dtm=dtm, height=height_path, laz=tuple(laz), stack=stack,
                                 zero_elevation=zero_elevation)
    else:
        sources = sources_from_storage(storage, departement, millesime)
        if zero_elevation:
            sources = ImagerySources(**{**sources.__dict__, "zero_elevation": True})
    options = PredictOptions(tile=tile, margin=margin, mode=mode, batch_size=batch_size, num_workers=workers,
                             device=device, precision=precision, compile=compile_model, block_size=block_size,
                             force=force)
    step(f"predict {departement} {millesime} with {_model_path(model).name}")
    report = run_predict(sources, _model_path(model), storage=storage, departement=departement, millesime=millesime,
                         options=options, block_ids=list(blocks) or None, array_index=array_index_from_env())
    if report_path:
        Path(report_path).write_text(json.dumps(report.to_dict(), indent=1))
    done(f"{len(report.blocks_run)} block(s) predicted, {len(report.blocks_skipped)} skipped; "
         f"{report.km2:.3f} km² in {report.seconds:.1f} s ({report.km2_per_hour:.2f} km²/h, "
         f"{report.patches512_per_s:.2f} patches 512²/s, {report.device} {report.precision})")


@click.command("vectorize")
@dep_option
@year_option
@root_option
@click.option("--umi-built", default=200.0, show_default=True, help="UMI of built areas (m²).")
@click.option("--umi-inside", default=500.0, show_default=True, help="UMI inside the zone construite (m²).")
@click.option("--umi-outside", default=2500.0, show_default=True, help="UMI outside the zone construite (m²).")
@click.option("--simplify", default=0.5, show_default=True, help="Coverage simplification tolerance (m); 0 = none.")
@click.option("--zone-construite", "zc_path", default=None,
              help="Zone construite layer (any vector file); default: derived from the predicted buildings.")
@click.option("--map-block", "map_part", default=None, metavar="I/N",
              help="Map job I of N (from 0): components and local sieve of every N-th block, written under "
                   "vectorize-work/. '/N': I from AWS_BATCH_JOB_ARRAY_INDEX; 'each': that block alone (an array "
                   "job of one child per block).")
@click.option("--reduce", "reduce_", is_flag=True, help="Reduce job: join the seams and sieve the whole graph.")
@click.option("--polygons-block", "polygons_part", default=None, metavar="I/N",
              help="Map job I of N of the polygons (after --reduce).")
@click.option("--assemble", is_flag=True,
              help="Last reduce job: stitch the pieces, simplify, write the layer, remove vectorize-work/.")
@force_option
def vectorize(departement: str, millesime: int, root: str | None, umi_built: float, umi_inside: float,
              umi_outside: float, simplify: float, zc_path: str | None, map_part: str | None, reduce_: bool,
              polygons_part: str | None, assemble: bool, force: bool) -> None:
    """Vectorise the prediction blocks: stepwise sieve to the UMIs, polygons stitched across blocks, simplified.

    Without a stage option, in one process. At département scale, as four jobs: --map-block I/N (array),
    --reduce, --polygons-block I/N (array), --assemble — the same polygons."""
    from inference_batch.production.vectorize import UMI
    from inference_batch.production.vectorize import vectorize as run_vectorize

    zone = None
    if zc_path:
        import geopandas as gpd

        zone = list(gpd.read_file(zc_path).geometry)
    umi = UMI(built=umi_built, inside_zc=umi_inside, outside_zc=umi_outside)
    storage = _storage(root)
    output = product_key("prediction_vector", departement, millesime)
    digest = fingerprint(storage, [], [block_prefix("prediction", departement, millesime)],
                         {"umi": [umi_built, umi_inside, umi_outside], "simplify": simplify, "zc": zc_path})
    stages = [s for s in (map_part, polygons_part) if s is not None] + [s for s in (reduce_, assemble) if s]
    if len(stages) > 1:
        raise click.UsageError("give one of --map-block, --reduce, --polygons-block, --assemble")
    if not force and zc_path is None and is_up_to_date(storage, output, digest):
        done(f"vectorize {departement} {millesime}: up to date ({output})")
        return
    if stages:
        _vectorize_stage(storage, departement, millesime, umi, simplify, zone, map_part, reduce_, polygons_part,
                         digest)
        return
    step(f"vectorize {departement} {millesime}")
    key, _frame, report = run_vectorize(storage, departement, millesime, umi=umi, simplify=simplify,
                                       zone_construite=zone)
    mark_done(storage, key, digest)
    done(f"{report.components} components → {report.polygons} polygons in {sum(report.seconds.values()):.1f} s "
         f"({report.mpx_per_s:.1f} Mpx/s) → {key}")


def _part(text: str, blocks: int) -> tuple[int, int]:
    """``I/N``; ``/N`` with I from the AWS Batch array index; ``each``: block I of the ``blocks``."""
    from inference_batch.production.predict import array_index_from_env
    from inference_batch.production.vectorize_stages import parse_part
    from ocsge.errors import OcsgeError

    if text == "each":
        text = f"/{blocks}"
    if text.startswith("/"):
        index = array_index_from_env()
        if index is None:
            raise OcsgeError(f"part {text!r} takes I from AWS_BATCH_JOB_ARRAY_INDEX, which is not set")
        text = f"{index}{text}"
    return parse_part(text)


def _vectorize_stage(storage, departement: str, millesime: int, umi, simplify: float, zone,  # type: ignore[no-untyped-def]
                     map_part: str | None, reduce_: bool, polygons_part: str | None, digest: str) -> None:
    from inference_batch.production import vectorize_stages as stages
    from inference_batch.production.vectorize import prediction_mosaic, write_prediction_vector

    mosaic, first = prediction_mosaic(storage, departement, millesime)
    prefix = stages.work_prefix(departement, millesime, digest)
    if map_part is not None:
        step(f"vectorize {departement} {millesime}: map {map_part}")
        ran = stages.map_components(storage, mosaic, prefix, _part(map_part, len(mosaic.blocks)), umi, zone)
        done(f"{len(ran)} block(s) → {prefix}components/")
    elif reduce_:
        step(f"vectorize {departement} {millesime}: reduce (seams and sieve)")
        sieved = stages.reduce_sieve(storage, mosaic, prefix, umi)
        done(f"{sieved.components} components → {len(sieved.region_cls)} regions → {prefix}sieve.npz")
    elif polygons_part is not None:
        step(f"vectorize {departement} {millesime}: polygons {polygons_part}")
        ran = stages.map_polygons(storage, mosaic, prefix, _part(polygons_part, len(mosaic.blocks)), umi)
        done(f"{len(ran)} block(s) → {prefix}pieces/")
    else:
        step(f"vectorize {departement} {millesime}: assemble")
        geoms, values, report = stages.reduce_assemble(storage, mosaic, prefix, umi, simplify)
        key, _frame = write_prediction_vector(storage, departement, millesime, mosaic, geoms, values, first)
        mark_done(storage, key, digest)
        stages.clear_work(storage, stages.work_root(departement, millesime))  # this run's and any stale one's
        done(f"{report.polygons} polygons → {key}")


@click.command("rules")
@dep_option
@year_option
@root_option
@click.option("--res", default=0.5, show_default=True, help="Grid of the rules (m).")
@click.option("--simplify", default=0.5, show_default=True, help="Coverage simplification tolerance (m).")
@force_option
def rules(departement: str, millesime: int, root: str | None, res: float, simplify: float, force: bool) -> None:
    """OCS GE auto: the vectorised prediction crossed with BD TOPO, RPG, BD Forêt and fichiers fonciers."""
    from inference_batch.production.rules import LAYERS
    from inference_batch.production.rules import rules as run_rules

    storage = _storage(root)
    output = product_key("occupation_auto", departement, millesime)
    digest = fingerprint(storage, [product_key(p, departement, millesime) for p in ("prediction_vector", *LAYERS)], [],
                         {"res": res, "simplify": simplify})
    if not force and is_up_to_date(storage, output, digest):
        done(f"rules {departement} {millesime}: up to date ({output})")
        return
    step(f"rules {departement} {millesime}")
    key, _frame, report = run_rules(storage, departement, millesime, res=res, simplify=simplify)
    zc_key = product_key("zone_construite_auto", departement, millesime)
    mark_done(storage, [key, zc_key] if storage.exists(zc_key) else key, digest)
    missing = f" (missing: {', '.join(report.layers_missing)})" if report.layers_missing else ""
    done(f"{report.polygons} polygons from {', '.join(report.layers_used) or 'no ancillary layer'}{missing} → {key}")
    if report.zone_construite_iou is not None:
        done(f"zone construite auto ({zc_key}): IoU {report.zone_construite_iou:.3f} against IGN's")


@click.command("qa")
@dep_option
@year_option
@root_option
@click.option("--produced", "-p", multiple=True,
              help="Layer(s) to assess: prediction, prediction_vector, occupation_auto, or a vector file "
                   "(default: every one available).")
@click.option("--reference", "-r", default="truth", show_default=True,
              help="Reference layer: a product name (truth, occupation) or a vector file.")
@click.option("--res", default=0.5, show_default=True, help="Comparison grid for two vector layers (m).")
@force_option
def qa(departement: str, millesime: int, root: str | None, produced: tuple[str, ...], reference: str,
       res: float, force: bool) -> None:
    """Recette: confusion matrix, overall accuracy, per-class F1 and IoU, area-weighted agreement (JSON + PNG)."""
    from inference_batch.production.qa import qa as run_qa

    storage = _storage(root)
    output = product_key("qa_report", departement, millesime)
    layers = [product_key(p, departement, millesime) for p in ("prediction_vector", "occupation_auto", "truth",
                                                               "occupation")]
    digest = fingerprint(storage, [*layers, *produced, reference], [block_prefix("prediction", departement, millesime)],
                         {"produced": produced, "reference": reference, "res": res})
    if not force and is_up_to_date(storage, output, digest):
        done(f"qa {departement} {millesime}: up to date ({output})")
        return
    step(f"qa {departement} {millesime} against {reference}")
    key, report = run_qa(storage, departement, millesime, produced=list(produced) or None,
                         reference=reference, res=res)
    for section in report["comparisons"]:  # type: ignore[union-attr]
        cs = section["couverture"]
        line = (f"  {section['produced']}: couverture OA {100 * cs['overall_accuracy']:.1f} %, "
                f"mean IoU {100 * cs['mean_iou']:.1f} %, kappa {cs['kappa']}")
        if "usage" in section:
            line += f"; usage OA {100 * section['usage']['overall_accuracy']:.1f} %"
        click.echo(line)
    mark_done(storage, key, digest)
    done(f"QA report → {key}")


@click.command("train")
@click.option("--run-dir", required=True,
              help="Folder of the run: last.pt (resumable), history.json, model.safetensors.")
@click.option("--flair", "flair_dir", default=None,
              help="FLAIR-format patches (IMG_*.tif + MSK_*.tif) under this folder.")
@click.option("--departement", "--dep", "-d", "departement", default=None, help="Train on this territory's imagery…")
@click.option("--millesime", "--year", "-y", "millesimes", multiple=True, type=int, help="…of these millésimes.")
@root_option
@click.option("--scheme", default="couverture", show_default=True,
              help="Class scheme: couverture (territory), flair13, flair15, flair19 (FLAIR patches).")
@click.option("--preset", default="unet-small", show_default=True,
              help="unet-small (CPU), unet-resnet18, unet-resnet34 (FLAIR baseline), unet-resnet50.")
@click.option("--epochs", default=10, show_default=True)
@click.option("--patch", default=256, show_default=True, help="Patch side (territory) in pixels.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--samples-per-epoch", default=512, show_default=True)
@click.option("--val-samples", default=128, show_default=True)
@click.option("--lr", default=3e-3, show_default=True)
@click.option("--seed", default=42, show_default=True)
@click.option("--workers", default=0, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
@click.option("--init", default=None, help="Start from this model (same classes and channels).")
@click.option("--name", default="model", show_default=True, help="Name recorded in the model card.")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir after its last finished epoch.")
@click.option("--output", default=None, help="Copy the best model here at the end.")
def train(run_dir: str, flair_dir: str | None, departement: str | None, millesimes: tuple[int, ...],
          root: str | None, scheme: str, preset: str, epochs: int, patch: int, batch_size: int,
          samples_per_epoch: int, val_samples: int, lr: float, seed: int, workers: int, precision: str,
          init: str | None, name: str, resume: bool, output: str | None) -> None:
    """Train the U-Net on FLAIR patches or a territory; validation OA/mIoU per epoch; resumable, seeded."""
    import shutil

    from inference_batch.production.train import TrainConfig
    from inference_batch.production.train import train as run_train

    cfg = TrainConfig(out_dir=run_dir, scheme=scheme, preset=preset, flair_dir=flair_dir, storage_root=root,
                      departement=departement, millesimes=tuple(millesimes), patch=patch, batch_size=batch_size,
                      epochs=epochs, samples_per_epoch=samples_per_epoch, val_samples=val_samples, lr=lr, seed=seed,
                      workers=workers, precision=precision, init=init, name=name)
    step(f"train {preset} ({scheme}) → {run_dir}")
    result = run_train(cfg, resume=resume)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result["model"], output)  # type: ignore[arg-type]
    done(f"best validation mIoU {100 * float(result['best_miou']):.2f} % → {output or result['model']}")
