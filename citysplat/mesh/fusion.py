"""Fuse depth maps into one coloured triangle mesh with open3d's TSDF (on the CPU).

A voxel-block grid (open3d's hashed TSDF, ``open3d.t.geometry.VoxelBlockGrid``) only allocates
voxels near surfaces, so a district of a few hundred metres at 5 cm costs memory in proportion to
its surface, not its volume. Truncation
of about four voxels keeps thin street furniture; the depth limit keeps distant, poorly
constrained depths out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import open3d.core as o3c

from citysplat.mesh.depth import DepthFrame


@dataclass(frozen=True)
class FusionSettings:
    """TSDF fusion: voxel size and truncation in metres, the farthest depth fused."""

    voxel_size: float = 0.05
    truncation_voxels: float = 8.0  # 40 cm at 5 cm: a road seen at a grazing angle needs it
    depth_max: float = 25.0
    allocation_voxels: float = 8.0  # voxel blocks allocated this far around each depth
    min_views: int = 1  # a surface integrated from fewer frames is not extracted
    block_count: int = 40_000  # initial hash capacity (8^3-voxel blocks); grown as needed


@dataclass
class FusedMesh:
    """A triangle mesh in the district's ENU frame with per-vertex colours."""

    vertices: np.ndarray  # [V, 3] float64
    faces: np.ndarray  # [F, 3] int64
    colors: np.ndarray  # [V, 3] float in [0, 1]
    frames_fused: int = 0

    @property
    def num_triangles(self) -> int:
        return int(len(self.faces))

    def to_open3d(self) -> o3d.geometry.TriangleMesh:
        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(self.vertices),
                                         o3d.utility.Vector3iVector(self.faces.astype(np.int32)))
        if len(self.colors):
            mesh.vertex_colors = o3d.utility.Vector3dVector(self.colors)
        return mesh

    @classmethod
    def from_open3d(cls, mesh: o3d.geometry.TriangleMesh, frames_fused: int = 0) -> FusedMesh:
        colors = (np.asarray(mesh.vertex_colors) if mesh.has_vertex_colors()
                  else np.zeros((len(mesh.vertices), 3)))
        return cls(np.asarray(mesh.vertices).copy(), np.asarray(mesh.triangles).astype(np.int64),
                   colors.copy(), frames_fused)


def fuse_depths(frames: Iterable[DepthFrame], settings: FusionSettings | None = None
                ) -> FusedMesh:
    """Integrate every frame into a TSDF voxel-block grid and extract its zero level set where
    at least ``settings.min_views`` frames observed it."""
    settings = settings or FusionSettings()
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"),
        attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=(1, 1, 3),
        voxel_size=settings.voxel_size,
        block_resolution=8,
        block_count=settings.block_count,
    )
    fused = 0
    for frame in frames:
        if not (frame.depth > 0).any():
            continue
        # COLMAP's pixel i spans [i, i + 1) with its centre at i + 0.5, and the voxel-block
        # grid reads the depth of pixel int(u): so COLMAP's K, as it is, looks up the nearest
        # pixel (measured: a road seen from 1.5 m fuses 2.5 cm too low with K shifted by half
        # a pixel, within 3 mm without)
        intrinsic = o3c.Tensor(np.array(frame.K, dtype=np.float64))
        extrinsic = o3c.Tensor(np.ascontiguousarray(frame.cam_from_world, dtype=np.float64))
        depth = o3d.t.geometry.Image(np.ascontiguousarray(frame.depth, dtype=np.float32))
        color = o3d.t.geometry.Image(np.ascontiguousarray(frame.color, np.float32) / 255.0)
        # blocks are allocated around the back-projected pixels: where a road is seen at a
        # grazing angle those lie a pixel footprint (decimetres) apart, so allocate generously
        # or the surface between them is never integrated (a chequered road)
        blocks = grid.compute_unique_block_coordinates(
            depth, intrinsic, extrinsic, 1.0, settings.depth_max,
            float(max(settings.truncation_voxels, settings.allocation_voxels)))
        table = grid.hashmap()  # open3d's CPU hash map does not grow by itself: a frame
        need = table.size() + int(blocks.shape[0])  # that overflows it crashes the process
        if need > table.capacity():
            table.reserve(int(need * 1.5))
        grid.integrate(blocks, depth, color, intrinsic, intrinsic, extrinsic, 1.0,
                       settings.depth_max, float(settings.truncation_voxels))
        fused += 1
    if fused == 0:
        return FusedMesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 3)), 0)
    # open3d guesses the vertex count from the blocks and crashes when the guess is short (its
    # issue #5568 on the CPU): a surface crosses a block of 8^3 voxels as a sheet of at most
    # about 8 x 8 x 2 edge crossings
    blocks = grid.hashmap().size()
    mesh = grid.extract_triangle_mesh(weight_threshold=settings.min_views - 0.5,
                                      estimated_vertex_number=max(1, blocks) * 8 * 8 * 3)
    if mesh.is_empty():
        return FusedMesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 3)), fused)
    vertices = mesh.vertex.positions.numpy().astype(np.float64)
    faces = mesh.triangle.indices.numpy().astype(np.int64)
    colors = (mesh.vertex.colors.numpy().astype(np.float64) if "colors" in mesh.vertex
              else np.zeros_like(vertices))
    return FusedMesh(vertices, faces, np.clip(colors, 0.0, 1.0), fused)
