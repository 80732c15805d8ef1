"""The one writer of each file format the batch steps produce (COG here; GeoParquet in
``inference_batch.products.artifacts``; PMTiles in ``inference_batch.products.tiles``), and the
transaction every batch step writes through (:mod:`inference_batch.writers.transaction`: its writes are
staged and land together once it succeeded; what a killed run left is swept by the next)."""
