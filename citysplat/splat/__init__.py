"""Gaussian splat training per district: rasterization, densification and fitting.

- :mod:`.config`: :class:`~.config.TrainConfig`, the one declaration of the training settings
  (its fields are declared with :mod:`.settings`; the CLI options, :mod:`.cli_options`, and the
  Dagster config are made from it, and one check serves them all);
- :mod:`.strategy`: gsplat's densification strategies as config objects;
- :mod:`.trainer`: the training loop; :mod:`.district`: training a district or any model;
- :mod:`.data`, :mod:`.model`, :mod:`.backend`, :mod:`.evaluate`, :mod:`.export`,
  :mod:`.dataset_export`: views, parameters, rasterizers, metrics, PLY, datasets.

:mod:`.rasterize_torch` holds a pure-PyTorch tiled rasterizer with the call signature and ``info``
entries of ``gsplat.rasterization`` (gsplat 1.5.3), for machines without CUDA (CPU, Apple MPS).
"""
