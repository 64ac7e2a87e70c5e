"""``fastp2p test``'s translation: each image of the loader translated and its triplet (real
and fake of an image without a target) written into the results folder's images/, then
index.html listing the whole ones; a stop request ends it between images, or while the next
one is waited for.
"""
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from fastp2p.train.result_names import names_root, output_name, single_heading
from fastp2p.train.results_folder import begin_results, count_not_written, partial_results

SINGLE = ("real", "fake")  # the images of --dataset_mode single, as the reference names them


@dataclass
class Translated:
    """What ``write_triplets_and_page`` did: ``count`` of ``total`` images written whole, their
    L1Scores (None when there were none), the signal that stopped it early (None: it ran to the
    end), how many images the data held (``listed``; more than ``total`` when --num_test cut
    them), and how many files in images/ it did not write (``not_written``: an earlier run's)."""
    count: int
    total: int
    scores: object
    stopped_by: int | None
    listed: int = 0
    not_written: int = 0


def write_triplets_and_page(args, netG, loader, device, out_dir, trackers, stops) -> Translated:
    """Write the image triplets into out_dir/images and index.html beside them.

    ``begin_results`` removes an earlier run's page before the first image is written; the
    page is written at the end and lists this run's whole triplets only. A stop request
    (``stops``: StopRequests) ends the run after the image being written (or the wait for the
    next one), with a page titled as partial; once the images are done, later requests are
    only recorded, so a complete run stays complete, and the loader's workers are stopped. An
    error before then (a full disk, an unreadable image, a data loader worker that died) raises
    ValueError saying how far it got and that no page was written; a page that cannot be
    written, that the images are whole."""
    import torch

    from fastp2p.train.checkpoints import describe_os_error
    from fastp2p.train.html_page import write_html

    images_dir = begin_results(out_dir)
    total = min(len(loader), args.num_test)
    sections = []   # (name, its images) of each whole triplet written
    try:
        with torch.no_grad():
            scores = _write_triplets(args, netG, loader, device, images_dir, trackers, total,
                                     sections, stops)
    except (OSError, ValueError, RuntimeError) as err:
        reason = _why_the_images_stopped(err)
        if reason is None:   # a bug: its traceback
            raise
        written = f"{len(sections)} of {total} images written, "
        raise ValueError(f"{reason}; {partial_results(out_dir, written)}") from err
    finally:   # what a second request would cut short is done (or failed)
        stops.hold()
        # No later batch is used: the workers prefetching them stop now, before one can die
        # and torch report it from the middle of the page or the report (a traceback).
        loader.close()
    # a stop request during the last image changes nothing either: the results are whole
    stopped_by = stops.signal_number if len(sections) < total else None
    try:
        write_html(out_dir / "index.html", _page_title(args, stopped_by, len(sections), total),
                   sections)
    except OSError as err:
        raise ValueError(f"{describe_os_error(err)}; the images are whole ({len(sections)} of "
                         f"{total} written, in {images_dir}): only their page failed") from err
    return Translated(len(sections), total, scores, stopped_by, len(loader),
                      count_not_written(images_dir, sections))


def _why_the_images_stopped(err: Exception) -> str | None:
    """One line for an error that stopped the images: data loader workers that could not all
    be started or whose batches could not be received (a limit on open files, as train says
    it), a failed write or read (OSError; one
    for a limit on open files says what to raise, and a disk out of inodes is said as such: the
    errno's words are those of a disk out of bytes), a bad image or a planted link (ValueError:
    DataError, NotAPlainFile), a data loader worker that died (torch's RuntimeError); None for
    any other RuntimeError."""
    from fastp2p.data.loader import LoaderWorkersFailed
    from fastp2p.train.checkpoints import describe_os_error, limit_advice
    from fastp2p.train.loader_failures import loader_worker_death, loader_workers_failed

    if isinstance(err, LoaderWorkersFailed):
        return loader_workers_failed(err, "run it again")
    if isinstance(err, OSError):
        advice = limit_advice(err)
        return describe_os_error(err) + (f"; {advice}, then run it again" if advice else "")
    if isinstance(err, ValueError):
        return str(err)
    return loader_worker_death(err, "run again")


def _write_triplets(args, netG, loader, device, images_dir, trackers, total, sections, stops):
    """Translate up to ``total`` images of ``loader`` and save each one's triplet (real and
    fake of an image without a target), appending it to ``sections`` once whole; stops early,
    between images or while the next one is waited for, when ``stops`` (StopRequests)
    received a signal. Returns the images' L1Scores (None when there were none: no pair)."""
    import torch
    from tqdm import tqdm

    from fastp2p.nn import graphed
    from fastp2p.terminal import stderr_bar
    from fastp2p.train.evaluation import L1Scores, train_mean_image
    from fastp2p.train.sample_images import TRIPLET, save_image

    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    netG.to(memory_format=layout)
    taken = set()   # output names used so far
    phase_dir = names_root(args)
    scores = None
    # On CUDA each forward is one graph replay (captured on the first image); eager on a CPU.
    translate = graphed(netG)
    # zip asks range first: no batch past the last used is waited for (nor its error met).
    # disable=None: no bar when stderr is not a terminal (a log file would keep every frame)
    batches = _batches_until_a_stop_while_waiting(loader, stops)
    for index, batch in stderr_bar(zip(range(total), batches), total=total, unit="image",
                                   disable=None, desc=f"translating {args.phase}"):
        real_A = batch["A"].to(device)
        fake_B = translate(real_A.contiguous(memory_format=layout))
        _refuse_nonfinite(fake_B, batch["A_paths"][0])
        if "B" in batch:   # a pair: its target scores the translation
            if scores is None:
                scores = L1Scores(args.input_nc == args.output_nc,
                                  *train_mean_image(args, batch["B"].shape[1:]))
            scores.add(real_A, fake_B, batch["B"])
            images = dict(zip(TRIPLET, (real_A[0], fake_B[0], batch["B"][0])))
        else:   # --dataset_mode single: no target; the reference's test model's names
            images = dict(zip(SINGLE, (real_A[0], fake_B[0])))
        source = Path(batch["A_paths"][0])
        name = output_name(source, phase_dir, taken)
        for label, image in images.items():
            save_image(image, images_dir / f"{name}_{label}.png", args.aspect_ratio)
        heading = name if "B" in batch else single_heading(name, source, phase_dir)
        sections.append((heading, [(label, f"images/{name}_{label}.png") for label in images]))
        for tracker in trackers:
            tracker.log_images(index, images)
        if stops.signal_number is not None:  # now, between images: every triplet is whole
            break
        requested = stops.take_checkpoint_request()
        if requested is not None:
            tqdm.write(f"{requested} received: fastp2p test has no checkpoint to save; it goes "
                       "on (SIGTERM or Ctrl-C stops it)", file=sys.stderr)
    return scores


def _batches_until_a_stop_while_waiting(loader, stops):
    """``loader``'s batches, ending where a stop request comes while the next one is waited for
    (``stops.while_waiting``): the loop checks ``stops`` only between images, so a request
    while an image never came (a hung network file system, a worker stuck in a decoder) was
    ignored for as long as the wait lasted. The request stays in ``stops.signal_number``, and
    the run ends as after a stop between images."""
    from fastp2p.train.stop_requests import StopWhileWaiting

    try:
        yield from stops.while_waiting(iter(loader))
    except StopWhileWaiting:
        return


def _refuse_nonfinite(fake_B, source: str) -> None:
    """ValueError naming the input image whose translation holds NaN or Inf, which would be
    saved as a black image (and scored as NaN) with exit 0. The weights are checked finite as
    they load (fastp2p.nn.checkpoint.weights_problem); finite weights large enough to overflow
    float32 still give one."""
    import torch

    if not bool(torch.isfinite(fake_B).all()):
        raise ValueError(f"{source}: the generator's output (fake_B) holds NaN or Inf, which "
                         "would be saved as a black image: the checkpoint's weights overflow "
                         "float32 on it; test another --epoch")


def _page_title(args, stopped_by, count: int, total: int) -> str:
    eval_mode = " (eval mode)" if args.eval else ""
    title = f"{args.name}: {args.phase}, epoch {args.epoch}{eval_mode}"
    if stopped_by is None:
        return title
    return (f"{title} (partial: stopped by {signal.Signals(stopped_by).name} after {count} of "
            f"{total} images)")
