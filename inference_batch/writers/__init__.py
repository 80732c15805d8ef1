"""The one writer of each file format the batch steps produce (COG here; GeoParquet in
``inference_batch.products.artifacts``; PMTiles in ``inference_batch.products.tiles``)."""
