"""Client library for mnist-serving: classify digit images over gRPC, without TensorFlow.

>>> from mnist_client import MnistClient
>>> with MnistClient("127.0.0.1:8500") as client:            # doctest: +SKIP
...     prediction = client.classify("digit.png")[0]
...     print(prediction.label, prediction.class_name, round(prediction.probability, 3))
7 7 0.998

``AsyncMnistClient`` is the asyncio twin. Every failure raises ``ClientError`` with the
gRPC status ``code`` and the server's ``details``.
"""

from mnist_client.aio import AsyncMnistClient
from mnist_client.channel import TlsConfig
from mnist_client.client import MnistClient
from mnist_client.errors import ClientError
from mnist_client.results import ModelInfo, Prediction

__all__ = ["AsyncMnistClient", "ClientError", "MnistClient", "ModelInfo", "Prediction", "TlsConfig"]
__version__ = "0.1.0"
