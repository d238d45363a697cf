"""Datasets as float tensors in [0,1], NCHW, with int64 labels. Normalization is the model's job.

Named datasets: ``mnist``, ``fashion_mnist``, ``cifar10``; plus ``npz:PATH`` (arrays ``x``, ``y``) and
``folder:PATH`` (one subfolder per class), held in memory (see :func:`load_dataset`); and ``imagefolder:PATH``
and ``csv:FILE``, streamed from disk batch by batch (see :func:`open_dataset` and :mod:`advkit.data.stream`).
"""

from advkit.data.core import (
    ArrayDataset,
    data_roots,
    list_datasets,
    load_dataset,
    open_dataset,
    register_dataset,
    register_prefix,
)

# sources registers the named datasets and the npz: and folder: families, stream the imagefolder: and csv:
# families: imported after core, which they use
from advkit.data.sources import read_image
from advkit.data.stream import Batch, StreamDataset, bad_files_error, head, iter_batches

__all__ = ["ArrayDataset", "Batch", "StreamDataset", "bad_files_error", "data_roots", "head", "iter_batches",
           "load_dataset", "list_datasets", "open_dataset", "read_image", "register_dataset", "register_prefix"]
