"""The segmentation core shared by the Lambda functions, the jobs, the operator command and the rehearsal.

Pure (no AWS calls), importing only ``contracts``; it ships inside the Lambda code and the processing package.

- ``classes``         class schemes (Cityscapes, custom lists), colours, vulnerable road users
- ``settings``        typed frame and class settings read once from environment variables (contracts.lambda_env)
- ``imaging``         frame validation and preparation (``prepare_frame``)
- ``keys``            S3 key decoding, key pattern parsing, inference ids, derived object keys
- ``metadata``        the async input object's user metadata (written by ingest, read by postprocess)
- ``masks``           mask PNG decoding, statistics, restoring, overlays
- ``results``         result, failure and quarantine documents
- ``signals``         per-frame signals (input, output, flicker, model confidence), their histograms, PSI and
                      Jensen-Shannon distance, reference profiles: shared by the data engine and the drift monitor
- ``recordio``        the algorithm's RecordIO probability output
- ``bundle_runtime``  the edge bundle: loading and checking it, its network input and mask
- ``scenes``          synthetic road scenes (tests, the rehearsal, benchmarks, parity frames)
"""
