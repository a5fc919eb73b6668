"""Datasets: the manifest and its downloads (`datasets`), user sequences (`sequences`), the built-in
synthetic data with planted intents (`synthetic`), and fetching the authors' files (`fetch`).

The names most code needs are importable from here."""

from bench.data.datasets import (
    DATASETS_DIR,
    ENV_DATA_DIR,
    REPO_ROOT,
    DatasetEntry,
    check_dataset,
    download,
    install_verified,
    item_attributes,
    known_datasets,
    load_dataset,
    manifest,
    sha256_file,
)
from bench.data.sequences import MAX_LEN, SeqData, concat_ranges, train_counts, windows

__all__ = ["DATASETS_DIR", "ENV_DATA_DIR", "MAX_LEN", "REPO_ROOT", "DatasetEntry", "SeqData", "check_dataset",
           "concat_ranges", "download", "install_verified", "item_attributes", "known_datasets", "load_dataset",
           "manifest", "sha256_file", "train_counts", "windows"]
