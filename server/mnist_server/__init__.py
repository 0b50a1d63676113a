"""mnist-server: gRPC model server for MNIST SavedModels (dynamic batching, hot reload, health,
Prometheus metrics). Entry point: `mnist-server` / `python -m mnist_server`."""

__version__ = "0.1.0"
