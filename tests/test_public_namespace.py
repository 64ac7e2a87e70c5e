"""What ``dir(fastp2p)`` lists: the public names, not the modules the package uses itself."""
import fastp2p


def test_dir_lists_no_helper_module():
    listed = dir(fastp2p)
    assert "importlib" not in listed
    assert {"UNet", "GANLoss", "PatchDiscriminator", "graphed", "__version__"} <= set(listed)
