"""analysis/threads.py: how many torch threads a task process gets, and a context that sets them
and gives the caller's count back."""

from __future__ import annotations

import pytest
import torch

from analysis.errors import ConfigError
from analysis.threads import torch_thread_count


def test_the_count_holds_inside_the_block_and_the_callers_comes_back() -> None:
    before = torch.get_num_threads()
    inside = before + 1
    with torch_thread_count(inside) as threads:
        assert threads == inside
        assert torch.get_num_threads() == inside
    assert torch.get_num_threads() == before


def test_the_callers_count_comes_back_after_an_error() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"), torch_thread_count(before + 2):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_nested_blocks_restore_in_order() -> None:
    before = torch.get_num_threads()
    with torch_thread_count(before + 1):
        with torch_thread_count(before + 2):
            assert torch.get_num_threads() == before + 2
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_fewer_than_one_thread_is_a_config_error_and_changes_nothing() -> None:
    before = torch.get_num_threads()
    with pytest.raises(ConfigError, match="torch_threads = 0"), torch_thread_count(0):
        pass
    assert torch.get_num_threads() == before
