"""Per-département products: ingestion of IGN deliveries, artificialisation, differences between
millésimes, corrections, change grid, commune statistics, COGs, PMTiles and download archives.

Every step reads and writes artifacts under the canonical product keys (``ocsge.products``) through
the storage writer, so a failed step leaves nothing half-written and a rerun skips finished work.
"""
