from support.catalog_fixtures import backend, pgstac_dsn, postgres, sample_root

__all__ = ["backend", "pgstac_dsn", "postgres", "sample_root"]
