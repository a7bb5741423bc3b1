"""Datasets, registered by name. Every dataset records its source so results from different data never mix."""

from modbench.data.dataset import ImageDataset
from modbench.data.mnist import load_mnist
from modbench.paths import default_data_dir
from modbench.registry import Registry

DATASETS: Registry = Registry("dataset")
DATASETS.add("mnist", load_mnist)

__all__ = ["DATASETS", "ImageDataset", "default_data_dir", "load_mnist"]
