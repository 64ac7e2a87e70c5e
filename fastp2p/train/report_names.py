"""Where a run's reports lie in its folder: the names the loss log (``loss_log``), the training
page (``training_page``), the numbering of an earlier run's kept reports (``kept_runs``) and
--overwrite's removal of them (``report_removal``) agree on."""

LOSS_LOG = "loss_log.csv"  # in the run folder
WEB = "web"                # the run folder's TrainingPage
IMAGES = "images"          # in WEB: the TrainingPage's sample images
# in WEB/images.N/ (or beside the folder IMAGES links to) while a move into it is unfinished
UNFINISHED_MOVE = ".unfinished-move"
