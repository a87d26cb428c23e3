"""Local rehearsal of roadseg (``make demo``): the deployed code paths end to end against moto, offline.

A moto server runs in a thread of this process on 127.0.0.1 (started and stopped by the rehearsal, never
left behind); boto3 reaches it through ``AWS_ENDPOINT_URL`` with fake credentials set only inside this
process. What no emulator can do, a trained model, is replaced by the STAND-IN SEGMENTER: the procedural
scene generator's exact ground truth for each frame, degraded by configurable tile noise. Everything it
produces is labelled as stand-in output. See ``demo/rehearsal.py`` for the stages.
"""

from __future__ import annotations


