"""Datasets, protocols and input pipelines. See docs/datasets.md.

Light on purpose: importing ``benchmarks.data`` does not import torchvision; loaders load on first use.
"""
from benchmarks.data.base import DatasetInfo, DomainSplits, ImageTensors, TaskData
from benchmarks.data.batches import iterate_batches, num_batches
from benchmarks.data.registry import available_datasets, data_root, dataset_info, load_domain
from benchmarks.data.tasks import build_multi_source_task, build_task, leave_one_domain_out

__all__ = ["DatasetInfo", "DomainSplits", "ImageTensors", "TaskData", "available_datasets",
           "build_multi_source_task", "build_task", "data_root", "dataset_info", "iterate_batches",
           "leave_one_domain_out", "load_domain", "num_batches"]
