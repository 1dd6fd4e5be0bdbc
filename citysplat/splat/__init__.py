"""Gaussian splat training per district: rasterization, densification and fitting.

:mod:`.rasterize_torch` holds a pure-PyTorch tiled rasterizer with the call signature and ``info``
entries of ``gsplat.rasterization`` (gsplat 1.5.3), for machines without CUDA (CPU, Apple MPS).
"""
