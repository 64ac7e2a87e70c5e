"""Conv choice tables (fastp2p/ops/backends/conv_choice.json's format) for tests: measured "on"
the CPU, where the fused convolution runs through the Triton interpreter, listing the same
entries for each direction asked (default both: the test's calls route alike with or without
a gradient)."""
import json

from fastp2p.ops.backends import conv_choice

CPU = conv_choice.device_name("cpu")


def conv_table(entries, modes=conv_choice.MODES, device=CPU) -> dict:
    return {"format": conv_choice.FORMAT, "device": device,
            "fused": {mode: list(entries) for mode in modes}}


def write_conv_table(path, entries, modes=conv_choice.MODES, device=CPU):
    """Write ``conv_table(entries, modes, device)`` to ``path``; returns ``path``."""
    path.write_text(json.dumps(conv_table(entries, modes, device)))
    return path


def use_conv_table(monkeypatch, path, entries, modes=conv_choice.MODES, device=CPU):
    """Write the table to ``path`` (a new path per table: conv_choice caches tables by path)
    and put it in place of the committed one, FASTP2P_CONV unset."""
    monkeypatch.setattr(conv_choice, "TABLE", write_conv_table(path, entries, modes, device))
    monkeypatch.delenv("FASTP2P_CONV", raising=False)
