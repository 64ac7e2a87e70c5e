"""A mark of an unfinished move (``TrainingPage.UNFINISHED``) in an ``images.N`` that is a
symbolic link is none of fastp2p's moves: the samples are never moved through the link."""
from fastp2p.train.training_page import TrainingPage


def test_a_marked_images_n_that_is_a_link_is_passed_over(tmp_path):
    web, elsewhere = tmp_path / "web", tmp_path / "elsewhere"
    (web / "images").mkdir(parents=True)
    (web / "images" / "epoch001_step0000001_real_A.png").write_bytes(b"an earlier run's")
    elsewhere.mkdir()
    (elsewhere / TrainingPage.UNFINISHED).touch()
    (web / "images.1").symlink_to(elsewhere)
    TrainingPage(web, "run", say=lambda line: None)   # a new run's: moves them at once
    assert sorted(path.name for path in elsewhere.iterdir()) == [TrainingPage.UNFINISHED]
    assert (web / "images.2" / "epoch001_step0000001_real_A.png").read_bytes() == \
        b"an earlier run's"
