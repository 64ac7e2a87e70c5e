"""The CPU model names its family and model numbers: a virtual machine's model name can be a bare
"AMD EPYC" on an AVX2 Zen 1 (family 23) and on an AVX-512 Zen 4 (family 25), whose measured
transposed-convolution forms (fastp2p.ops.remembered_forms) and benchmark figures differ."""
from fastp2p import cpu_info

ZEN1 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 2

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
"""


def test_the_first_processors_name_family_and_model():
    assert cpu_info.model_from_cpuinfo(ZEN1) == "AMD EPYC (family 23, model 1)"
    zen4 = ZEN1.replace("family\t: 23", "family\t: 25").replace("model\t\t: 1\n",
                                                                  "model\t\t: 17\n")
    assert cpu_info.model_from_cpuinfo(zen4) == "AMD EPYC (family 25, model 17)"


def test_a_name_without_numbers_is_the_name_and_no_name_is_none():
    assert cpu_info.model_from_cpuinfo("model name\t: Some CPU\n") == "Some CPU"
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"
    assert cpu_info.model_from_cpuinfo(arm) is None


def test_the_remembered_forms_section_names_the_family(monkeypatch):
    from fastp2p.ops import remembered_forms

    read_text = cpu_info.Path.read_text
    monkeypatch.setattr(cpu_info.Path, "read_text", lambda self, *args, **kwargs: (
        ZEN1 if str(self) == "/proc/cpuinfo" else read_text(self, *args, **kwargs)))
    remembered_forms.machine.cache_clear()
    try:
        assert remembered_forms.machine().startswith("AMD EPYC (family 23, model 1) | torch ")
    finally:
        remembered_forms.machine.cache_clear()
