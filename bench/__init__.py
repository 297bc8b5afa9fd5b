"""Benchmarks of the rendezvous server against Synapse's own rendezvous and a bare ASGI endpoint.

Run with ``python -m bench [--quick] [--targets ...]``; see ``docs/benchmarks.md``. Nothing here is part of the
test suite: these are measurements that print a table, not assertions.
"""
