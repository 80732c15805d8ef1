"""Domain core shared by every role: nomenclature, artificialisation, territory, products, storage."""

__version__ = "0.1.0"
