"""The STAC API (stac-fastapi 7) over the catalogue backend chosen in the settings."""
