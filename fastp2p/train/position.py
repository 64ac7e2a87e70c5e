"""Where training is: the position a training state saves and ``--continue_train`` resumes from.

Its own module because both the epoch loop (``trainer``) and the check of a loaded training
state (``train_state_check``) read its fields; ``epoch_reached`` says in epochs where a saved
position is, for the trainer, a resume's "done up to" line (``resuming``) and ``fastp2p test``'s
end line (``saved_point``)."""
from dataclasses import dataclass


@dataclass
class Progress:
    """Where training is. The fields after ``images`` are absent from the states of older
    fastp2p versions, which resume as they did (``epoch_batches`` counted in this run's
    batches, the epoch's loss reads starting empty, the epoch done when its images reach the
    dataset's length, no check that the dataset still holds as many pairs)."""
    epoch: int          # the epoch being trained (or next to train)
    epoch_batches: int  # batches of that epoch already done
    images: int         # training images seen so far, all processes
    epoch_images: int | None = None  # images of that epoch already done, all processes
    batch_size: int | None = None    # --batch_size and processes that counted them
    world_size: int | None = None
    epoch_loss_sum: float = 0.0      # the epoch's generator loss (G_GAN + G_L1), summed over
    #                                  its steps (under torchrun: the ranks' mean)
    epoch_loss_reads: int = 0        # the steps in that sum (each read weighs the steps it
    #                                  covers, so --log-every cannot change the metric)
    # the loader's last batch of that epoch is done: with drop_last (CUDA graphs) a finished
    # epoch ends below the dataset's length, so epoch_images alone cannot say so
    epoch_complete: bool = False
    # the pairs the dataset held when that epoch was trained: its order is drawn from this
    # count, so a resume on another count cannot continue the same order
    dataset_pairs: int | None = None


def epoch_reached(epoch: int, epoch_batches: int, epoch_complete: bool) -> tuple[int, bool]:
    """Where a saved position (a Progress's ``epoch``, ``epoch_batches``, ``epoch_complete``)
    is in epochs: (E, False) within epoch E, some of its batches done; (E, True) at the end of
    epoch E, its last batch done (``epoch_complete``: saved at its last step) or the epoch's
    end having moved the position on to epoch E + 1, none of whose batches are done yet."""
    if epoch_complete or epoch_batches == 0:
        return (epoch if epoch_complete else epoch - 1), True
    return epoch, False
