"""Datasets as float tensors in [0,1], NCHW, with int64 labels. Normalization is the model's job.

Named datasets: ``mnist``, ``fashion_mnist``, ``cifar10``; plus ``npz:PATH`` (arrays ``x``, ``y``) and
``folder:PATH`` (one subfolder per class). See :func:`load_dataset`.
"""

from advkit.data.core import ArrayDataset, data_roots, load_dataset, list_datasets

__all__ = ["ArrayDataset", "data_roots", "load_dataset", "list_datasets"]
