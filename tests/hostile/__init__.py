"""Hostile input: what an attacker or a careless operator sends, and what ferry does with it.

One module per finding of issue 13 (the file name says the guarantee), plus the fuzzing that
stays in CI (`test_fuzz_*`). Tests use real processes where the finding spans them: a real
nats-server, the real worker and front door, real HTTP servers. To add a case, add a test to
the module of its kind, or a new module; the shared fixtures are in `tests/conftest.py`.
"""
