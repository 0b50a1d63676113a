"""The mnist-serving contract (distribution `mnist-serving-api`), shared by server, client and trainer:

- `mnist_serving.v1`: the gRPC API, generated from `v1/classifier.proto` by `proto/generate.py`;
- `mnist_serving.layout`: the model volume's layout (version directories, file names, metadata fields);
- `mnist_serving.images`: the image preparations each model's metadata names;
- `mnist_serving.idx`: the IDX dataset format.
"""
