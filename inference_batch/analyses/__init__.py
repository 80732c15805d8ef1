"""Analyses for planners built on the per-département products: portrait de territoire, origin of new
built and artificialised land, tâche urbaine. Each is a step with its registered products, written
through the product writers and skipped when up to date (``inference_batch.freshness``)."""
