"""mnist-trainer: trains the tutorial MNIST CNN and exports a versioned TensorFlow SavedModel."""

__version__ = "0.1.0"
