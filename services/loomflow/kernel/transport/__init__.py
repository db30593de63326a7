"""How a service reaches the services it depends on, besides one unary gRPC call per request.

* :mod:`.inprocess`: a service hosted in its caller's own process is called through its
  wrapped handlers (the kernel pipeline) with no socket and no serialization.
"""
