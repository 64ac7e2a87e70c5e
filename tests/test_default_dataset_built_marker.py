"""A cached build of the default dataset (or its pack) counts only with the mark its build
leaves (``BUILT_MARKER``): an empty ``$FASTP2P_CACHE/default-gray2color-<fingerprint>`` folder
was taken for the dataset, and reported as "…/train: folder not found (check the dataset
folder, --dataroot …)" though no --dataroot was passed. Such a folder is now built again."""
from fastp2p.data.default_dataset import _built_once


def _build(folder):
    (folder / "train").mkdir()
    (folder / "train" / "x.jpg").write_bytes(b"jpeg")


def test_a_folder_without_the_mark_is_built_again(tmp_path):
    final = tmp_path / "cache" / "default-x"
    (final / "train").mkdir(parents=True)   # emptied by hand, or a build cut short
    assert _built_once(final, _build, "the default dataset") == final
    assert (final / "train" / "x.jpg").is_file()
    assert [path.name for path in final.parent.iterdir()] == ["default-x"]


def test_a_marked_folder_is_used_as_it_is(tmp_path):
    final = tmp_path / "cache" / "default-x"
    _built_once(final, _build, "the default dataset")

    def no_build(folder):
        raise AssertionError("built again")
    assert _built_once(final, no_build, "the default dataset") == final
