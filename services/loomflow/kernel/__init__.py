"""The server kernel every loomflow service shares: configuration, the gRPC
server bootstrap and its interceptor pipeline, errors, auth, tenancy, telemetry."""
