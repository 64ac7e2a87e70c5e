"""An OMP_NUM_THREADS (or MKL_NUM_THREADS) that OpenMP ignores (`abc`, 0) is said to be ignored
in the threads line, and the run chooses its compute threads as if it were unset; it was
reported as the source of torch's default thread count, as if honoured."""
import pytest

from fastp2p.train.cpu_threads import choose_threads


@pytest.mark.parametrize("value", ["abc", "0", "4,x"])
def test_an_invalid_thread_count_is_said_ignored_and_the_auto_choice_stands(value):
    unset = choose_threads("cpu", None, cores=4, busy=False, environ={})
    choice = choose_threads("cpu", None, cores=4, busy=False,
                            environ={"OMP_NUM_THREADS": value})
    assert choice.torch_threads == unset.torch_threads
    assert f"(auto; OMP_NUM_THREADS={value!r} is no thread count: ignored)" in choice.summary


@pytest.mark.parametrize("value", ["3", "3,2"])
def test_a_valid_thread_count_is_named_as_the_source(value):
    choice = choose_threads("cpu", None, cores=4, busy=False,
                            environ={"OMP_NUM_THREADS": value})
    assert f"(OMP_NUM_THREADS={value})" in choice.summary and "ignored" not in choice.summary
