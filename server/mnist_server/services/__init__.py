"""Protocol adapters. Each module exposes

    add_to_server(server: grpc.aio.Server, core: InferenceCore, settings: Settings) -> tuple[str, ...]

which registers its servicer(s) and returns their full service names (health and reflection use
them). app.ADAPTERS lists the modules the server registers.
"""
