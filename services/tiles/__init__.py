"""Raster tiles: national mosaics of the class COGs over the catalogue, single COGs, legends."""
