"""The consolidation loop's store and model, shared by the HTTP API and the batch export (see
``services/consolidation/API.md``)."""
