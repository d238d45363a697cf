"""Datasets as float tensors in [0,1], NCHW, with int64 labels. Normalization is the model's job.

Named datasets: ``mnist``, ``fashion_mnist``, ``cifar10``; plus ``npz:PATH`` (arrays ``x``, ``y``) and
``folder:PATH`` (one subfolder per class). See :func:`load_dataset`.
"""

from advkit.data.core import ArrayDataset, data_roots, list_datasets, load_dataset, register_dataset, register_prefix

# sources registers the named datasets and the npz: and folder: families: imported after core, which it uses
from advkit.data.sources import read_image

__all__ = ["ArrayDataset", "data_roots", "load_dataset", "list_datasets", "read_image", "register_dataset",
           "register_prefix"]
