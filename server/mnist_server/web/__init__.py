"""The HTTP port: one aiohttp server on the gRPC server's event loop.

server.py builds it (limits, TLS, middleware, drain); each API is one module with add_routes():
probes.py (/healthz, /readyz, /metrics), tfserving.py (TF Serving REST), kserve.py (KServe v2 REST),
classify.py (our API: image upload and JSON), page.py (the draw-a-digit page and its static files).
Handlers raise the same domain errors as the gRPC adapters; middleware.py turns them into HTTP statuses.
"""
