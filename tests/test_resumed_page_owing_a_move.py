"""A resumed page whose save records the move of another run's samples as owed
(``set_aside_owed``): which samples in images/ it takes for that run's, and when the resumed
run's staged samples take their names."""
import pytest

from fastp2p.train.training_page import TrainingPage

OWED = {"set_aside_owed": True, "kept_number": 1}
EARLIER = "epoch003_step0000001_real_A.png"   # the other run's, in images/
STAGED = "epoch001_step0000001_real_A.png"    # the resumed run's, staged


def _folder_as_a_killed_process_left_it(web, kept_files):
    """web/images holding the other run's sample and the resumed run's staged one, and
    images.1/ holding ``kept_files`` (name: bytes)."""
    (web / "images").mkdir(parents=True)
    (web / "images" / EARLIER).write_bytes(b"the other run's")
    (web / "images" / (TrainingPage.STAGED + STAGED)).write_bytes(b"the resumed run's")
    (web / "images.1").mkdir()
    for name, data in kept_files.items():
        (web / "images.1" / name).write_bytes(data)


@pytest.mark.parametrize("kept_files", [
    {},   # a kill between the folder's mkdir and its mark
    {"epoch003_step0000002_real_A.png": b"moved", TrainingPage.UNFINISHED: b""}],   # part-way
    ids=["empty", "marked"])
def test_a_move_the_record_owes_is_done_only_where_its_folder_holds_it_whole(tmp_path,
                                                                             kept_files):
    """images.1/ empty, or holding the mark of a move killed part-way, is no whole move: the
    plain samples in images/ are still the other run's, moved into images.N/ at the save (taken
    for the resumed run's, they were listed as its own and past its step deleted)."""
    web = tmp_path / "web"
    _folder_as_a_killed_process_left_it(web, kept_files)
    page = TrainingPage(web, "run", resume_step=10, staged=OWED, say=lambda line: None)
    assert page.setting_aside
    page.set_aside_before_save()
    assert [path.read_bytes() for path in web.glob(f"images.*/{EARLIER}")] == [b"the other run's"]
    assert not (web / "images" / EARLIER).exists()


def test_staged_samples_a_state_records_keep_their_names_until_the_next_save(tmp_path):
    """A resume whose state records the staged samples and owes the move renames them only
    once its save is on disk: renamed before, a kill in the save left them under their own
    names beside the state still owing the move, and the next resume moved them into images.N/
    as the other run's."""
    web = tmp_path / "web"
    _folder_as_a_killed_process_left_it(web, {})
    record = {"set_aside_owed": True, "kept_number": None}
    page = TrainingPage(web, "run", resume_step=10, staged=record, say=lambda line: None)
    page.set_aside_before_save()
    assert (web / "images" / (TrainingPage.STAGED + STAGED)).exists()
    page.delete_discarded_samples()   # after the save
    assert (web / "images" / STAGED).read_bytes() == b"the resumed run's"
