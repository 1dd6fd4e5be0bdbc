"""Structure from motion of a set of images with pycolmap 4.x, georegistered into their ENU
frame: the stages of :mod:`citysplat.sfm` run in order.

``reconstruct(inputs, work_dir, out)`` runs, on the CPU:

1. screening (:mod:`.inputs`): corrupt, tiny, blurred and badly exposed images are left out
   and reported with their reasons, as are images the caller marked unusable (panoramas);
2. features (:mod:`.features`): SIFT, one COLMAP camera per distinct intrinsics;
3. priors (:mod:`.priors`): the images' ENU positions as the database's pose priors, and which
   cameras keep their intrinsics;
4. matching (:mod:`.matching`): the given image pairs, or :func:`citysplat.pairs.select_pairs`
   over the inputs; features and matches stay in ``work_dir`` for re-runs;
5. mapping (:mod:`.mapping`) per component of the match graph, incremental against GLOMAP,
   then the EXIF and guessed intrinsics refined, principal points included (:mod:`.refine`);
6. placement (:mod:`.merge`): the largest model georegistered (:mod:`.georegister`) to the
   priors, the other models merged in by their own georegistration, misregistered images
   dropped;
7. output (:mod:`.output`): ``sparse/`` (COLMAP binary, written atomically), ``pairs.txt``,
   ``metrics.json`` and, given a frame, ``frame.json``, at the paths of the output's
   :class:`citysplat.layout.SfmLayout`.

pycolmap is imported lazily, after :mod:`citysplat` has loaded ``zlib`` (see its ``__init__``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.frames import LocalFrame
from citysplat.layout import SfmLayout, SfmWorkLayout
from citysplat.sfm.features import extract_features
from citysplat.sfm.inputs import (
    SfmInput,
    SfmInputError,
    check_names,
    screen_inputs,
)
from citysplat.sfm.mapping import ReconstructionFailedError, map_components
from citysplat.sfm.matching import MatchGraph, choose_pairs, match_pairs
from citysplat.sfm.merge import place_models
from citysplat.sfm.options import DEFAULT_MAPPER, MAPPERS, SfmOptions
from citysplat.sfm.output import (
    SfmResult,
    model_metrics,
    prior_sources,
    run_metrics,
    write_metrics,
    write_model_atomically,
)
from citysplat.sfm.priors import PositionPriors, camera_roles, write_pose_priors
from citysplat.sfm.refine import refine_model
from citysplat.sfm.workdir import WorkState, claim_work_dir, link_images


class _Timings(dict):
    """Seconds per stage; ``with timings("features"): ...`` times one."""

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = time.perf_counter() - t0


@contextlib.contextmanager
def _colmap_logging(verbose: bool) -> Iterator[None]:
    import pycolmap

    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if verbose else 2  # 2: errors only
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def reconstruct(inputs: Sequence[SfmInput], work_dir: str | Path | SfmWorkLayout,
                out: str | Path | SfmLayout, *, pairs: Iterable[tuple[str, str]] | None = None,
                mapper: str = DEFAULT_MAPPER, seed: int = 0, options: SfmOptions | None = None,
                frame: LocalFrame | None = None) -> SfmResult:
    """Reconstruct ``inputs`` into ``out`` (a folder or its :class:`SfmLayout`, e.g. a
    district's: ``sparse/`` in ENU metres when >= 3 images have priors).

    ``pairs``: the image pairs to match (names); None -> :func:`citysplat.pairs.select_pairs`
    over the inputs with ``options.pair_config``. ``mapper``: ``"auto"`` (incremental, and
    GLOMAP where incremental leaves images out; the better model per component),
    ``"incremental"`` or ``"global"`` (GLOMAP). ``seed`` fixes every RANSAC and mapper seed.
    ``work_dir`` holds the database and image links (scratch: may be deleted afterwards).
    ``frame``: the ENU frame of the priors, saved as the output's ``frame.json`` when given.

    Raises :class:`SfmInputError` (a ``ValueError``) for unusable input as a whole: duplicate
    names, fewer than 3 usable images (:class:`NotEnoughImagesError`), an unknown mapper; and
    :class:`ReconstructionFailedError` when no model comes out (``metrics.json`` still says
    what happened).
    """
    import pycolmap

    started = time.perf_counter()
    options = options or SfmOptions()
    if mapper not in MAPPERS:
        raise SfmInputError(f"unknown mapper {mapper!r}: use one of {', '.join(MAPPERS)}")
    inputs = list(inputs)
    check_names(inputs)
    work = work_dir if isinstance(work_dir, SfmWorkLayout) else SfmWorkLayout(Path(work_dir))
    out = out if isinstance(out, SfmLayout) else SfmLayout(Path(out))
    timings = _Timings()

    with timings("screening"):
        screened = screen_inputs(inputs, options.screening)
    messages = list(screened.messages)
    unusable = dict(screened.unusable)
    claim_work_dir(work)
    link_images(screened.usable, work.images_dir)
    state = WorkState.load(work)

    with _colmap_logging(options.verbose):
        pycolmap.set_random_seed(seed)
        with timings("features"):
            features = extract_features(screened.usable, work, options, state)
        write_pose_priors(features.database, screened.usable, features.images)
        cameras = camera_roles(screened.usable, features.images)
        unusable.update(features.failed(screened.usable))
        present = features.present(screened.usable)
        priors = PositionPriors.of(present)

        with timings("matching"):
            chosen = choose_pairs(present, pairs, options.pair_config)
            matches = match_pairs(features, chosen.pairs, out.pairs_txt, state, seed=seed,
                                  num_threads=options.num_threads)

        with timings("mapping"):
            mapped = map_components(MatchGraph.read(features.database), work, mapper=mapper,
                                    seed=seed, cameras=cameras, priors=priors, options=options)
            if mapped.models:
                mapped.models[0], notes = refine_model(
                    mapped.largest, cameras, options.max_focal_change,
                    refine_principal_point=options.refine_principal_point,
                    max_principal_point_shift=options.max_principal_point_shift)
                messages += notes

    run = run_metrics(total_images=len(inputs), usable=screened.usable, present=present,
                      unusable=unusable, mapper=mapper, seed=seed, chosen=chosen,
                      matches=matches, mapped=mapped)
    if mapped.largest is None:
        timings["total"] = time.perf_counter() - started
        write_metrics(out.sfm_metrics, {
            **run, "registered_images": 0, "georeferenced": False,
            "seconds": timings["total"], "timings": dict(timings),
            "error": f"no model: {matches.verified} verified image pairs of "
                     f"{len(chosen.pairs)} matched"})
        raise ReconstructionFailedError(
            f"SfM found no model in {len(present)} usable images ({matches.verified} of "
            f"{len(chosen.pairs)} image pairs matched): the images may not overlap, or the "
            "pairs given do not connect them")

    with timings("georegistration"):
        placed = place_models(mapped.models, priors, options, seed)
    messages += placed.messages
    model = placed.model
    registered = sorted(image.name for image in model.images.values() if image.has_pose)
    unregistered = sorted({item.name for item in present} - set(registered))

    with timings("write"):
        write_model_atomically(model, out.sparse_dir)
        if frame is not None:
            frame.save(out.frame_json)
    timings["total"] = time.perf_counter() - started
    figures = model_metrics(placed)
    metrics = {
        **run,
        "registered_images": len(registered),
        "unregistered": unregistered,
        "models": len(mapped.models),
        **figures,
        "prior_sources": prior_sources(present),
        "seconds": timings["total"],
        "timings": dict(timings),
        "messages": messages,
    }
    write_metrics(out.sfm_metrics, metrics)
    return SfmResult(
        out_dir=out.dir, sparse_dir=out.sparse_dir, metrics_path=out.sfm_metrics,
        reconstruction=model, registered=registered, unregistered=unregistered,
        unusable=unusable, total_images=len(inputs), mapper=mapper,
        georeferenced=placed.georegistration.georeferenced,
        georegistration=placed.georegistration,
        mean_reprojection_error_px=figures["mean_reprojection_error_px"],
        seconds=timings["total"], timings=dict(timings), messages=messages, metrics=metrics,
        frame=frame,
    )

