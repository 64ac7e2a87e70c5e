"""``pytest benchmarks/`` runs the pytest-benchmark tests of test_micro_benchmarks.py; the
project's device marks apply here too.
"""
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
