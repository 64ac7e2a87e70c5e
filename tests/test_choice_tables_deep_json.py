"""The committed choice tables (fastp2p/ops/backends/*.json) are read through
fastp2p.json_files: a table nested deeper than the interpreter's recursion limit is refused with
the tables' own one-line ValueError (rebuild or delete), not a RecursionError traceback."""
import pytest

from fastp2p.ops.backends import conv_choice, cuda_choice


@pytest.mark.parametrize("read, says", [(cuda_choice.cpp_shapes, "backend choice table"),
                                        (conv_choice.fused_layers, "conv choice table")])
def test_a_deeply_nested_table_is_refused_in_one_line(tmp_path, read, says):
    table = tmp_path / "table.json"
    table.write_text("[" * 200000)
    with pytest.raises(ValueError, match=f"is not a readable {says}"):
        read(table)
