"""Testing helpers shipped with the servers: run loomflow in your own tests and benchmarks.

Everything here drives the real thing, on free loopback ports:

- :mod:`loomflow.testing.suite` — ``running_suite``: the services in this process (fast; grpc.aio).
- :mod:`loomflow.testing.processes` — ``ServeProcess``: ``loomflow serve`` as a child process,
  waited on until its health check answers SERVING, stopped with SIGTERM (or killed).
- :mod:`loomflow.testing.secure` — ``secure_suite``: a serve process in secure mode with minted tokens.
- :mod:`loomflow.testing.databases` — DSNs for every backend, and a Postgres schema or Redis key
  prefix of its own per test, on the servers ``LOOMFLOW_TEST_POSTGRES_DSN`` / ``LOOMFLOW_TEST_REDIS_URL``
  name (``scripts/services.sh`` exports both).
- :mod:`loomflow.testing.certs` — a throwaway CA with server and client certificates for TLS tests.

docs/testing.md shows each in use. Submodules import what they need, so
``import loomflow.testing.databases`` works without gRPC's health package or the database drivers.
"""
