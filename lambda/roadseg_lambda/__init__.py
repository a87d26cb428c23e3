"""Runtime library of the roadseg Lambda functions.

The modules here are pure (no AWS calls) except ``aws`` (client factories and error classification):

- ``settings``  typed configuration read once from environment variables
- ``imaging``   frame validation and preprocessing (``prepare_frame``)
- ``keys``      S3 key decoding, key pattern parsing, inference ids, derived object keys
- ``metadata``  the async input object's user metadata (written by ingest, read by postprocess)
- ``masks``     mask PNG decoding, statistics, restoring, overlays
- ``results``   result, failure and quarantine documents

The handler modules (``ingest``, ``postprocess``, ``realtime``) live one level up, in ``lambda/``.
"""
