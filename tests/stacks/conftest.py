"""The stacks' tests use the session-wide `synth` fixture of tests/conftest.py (one synthesized app per
environment, shared with the rehearsal's tests)."""
