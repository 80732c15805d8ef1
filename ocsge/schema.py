"""Column names of the canonical vector schema (GeoParquet, EPSG of the département).

These are the names IGN uses, so users recognise them (ARCHITECTURE.md §3). Every writer of an
occupation, difference or artificialisation layer uses these constants, every reader relies on them.
"""

from __future__ import annotations

ID = "id"
CODE_CS = "code_cs"
CODE_US = "code_us"
MILLESIME = "millesime"  # int year
SOURCE = "source"  # "ign" (official delivery), "synthetic" (generated truth), "auto:<deciding data>"
GEOMETRY = "geometry"

OCCUPATION_COLUMNS: tuple[str, ...] = (ID, CODE_CS, CODE_US, MILLESIME, SOURCE, GEOMETRY)

# Differences between two millésimes
CS_AVANT, US_AVANT, CS_APRES, US_APRES = "cs_avant", "us_avant", "cs_apres", "us_apres"
DIFFERENCE_COLUMNS: tuple[str, ...] = (ID, CS_AVANT, US_AVANT, CS_APRES, US_APRES, GEOMETRY)

# Artificialisation
ARTIF = "artif"  # "artif" | "non artif", as IGN delivers it
CRIT_SEUIL = "crit_seuil"  # bool: class decided by a threshold rather than by the matrix
ARTIF_VALUES = ("artif", "non artif")
ARTIFICIALISATION_COLUMNS: tuple[str, ...] = (ID, CODE_CS, CODE_US, MILLESIME, ARTIF, CRIT_SEUIL, GEOMETRY)

# Corrections of the previous millésime (IGN "patch correctif")
CS_CORR, US_CORR = "cs_corr", "us_corr"

# Communes
INSEE_COM = "insee_com"
NOM_COM = "nom"
