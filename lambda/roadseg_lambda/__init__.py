"""Lambda-only helpers of the roadseg functions: AWS client factories and error classification (``aws``), batch
processing (``batch``), notifications, storage, and the drive launcher's requests and counters (``drive_jobs``,
``drive_counts``).

The frame and mask core the functions share with the jobs and the operator command is ``segcore`` (shipped next to
this package in the Lambda code). The handler modules (``ingest``, ``postprocess``, ``realtime``, ...) live one level
up, in ``lambda/``.
"""
