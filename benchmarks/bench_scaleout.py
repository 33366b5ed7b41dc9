"""Scale-out figures: the default dataset on local 2-worker Dask and Ray clusters beside joblib's loky."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

from common import RECIPE, registry, timed

SECTIONS, section = registry()


@section
def scaleout(args: argparse.Namespace) -> None:
    """Shards/s and images/s through each backend, workers started and warm (one task per shard)."""
    import ray
    from distributed import Client, LocalCluster

    import fracbuild.rendering as R
    from fracbuild.recipe import load_recipe, shard_plan

    recipe = load_recipe(RECIPE)
    workers = os.cpu_count() or 1
    shards = len(shard_plan(recipe))
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster, Client(cluster):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        runs = {
            "loky": dict(backend="loky", jobs=workers),
            "threading": dict(backend="threading", jobs=workers),
            "dask": dict(backend="dask", address=cluster.scheduler_address),
            "ray": dict(backend="ray", jobs=workers),  # the Ray started above, kept between renders
        }
        for name, options in runs.items():  # warm-up: worker start-up and kernel caches
            R.render(recipe, f"{tmp}/warm-{name}", classes=8 * workers, shard_size=4, progress=False, preview=False,
                     **options)
        for name, options in runs.items():
            seconds = timed(lambda o=options, n=name: R.render(recipe, f"{tmp}/{n}", progress=False,
                                                              preview=False, **o))
            print(f"scale   {name:9s} {workers} workers, L=1000 in {shards} shards: {seconds:.2f} s = "
                  f"{shards / seconds:.1f} shards/s, {1000 / seconds:.0f} images/s")
        ray.shutdown()
