"""The generated territory (``ocsge synth``): a seeded, clearly synthetic département (``S01`` by default,
"Territoire synthétique") with ground truth for two millésimes, ancillary data, 0.2 m imagery and IGN-like
deliveries, plus a vector-only mode at département scale.

- :func:`build_scene` — everything in memory, nothing written (fast; for tests);
- :func:`generate` — build and write every artifact through storage writers; returns the manifest;
- :func:`generate_vector_pair` — a département-sized pair of truths (10⁵–10⁶ polygons), no imagery.
"""

from inference_batch.synth.generate import Manifest, generate
from inference_batch.synth.scene import Scene, build_scene

__all__ = ["Manifest", "Scene", "build_scene", "generate"]
