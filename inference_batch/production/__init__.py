"""AI production of OCS GE: model, checkpoints, input adapters, training, batch inference to COG blocks,
vectorisation with the minimum mapping units, the "auto" rules with ancillary data, and QA.

Verbs (``ocsge train | predict | vectorize | rules | qa``) are in :mod:`inference_batch.production.cli`;
the functions they call are importable on their own so that ``ocsge demo`` and the AWS Batch entrypoint
chain them without going through the CLI.
"""
