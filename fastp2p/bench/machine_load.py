"""How busy the machine is when a bench run begins and after its last job, recorded with its
results and said above their table: a busy machine's figures are not worth comparing. No
torch: ``render`` (also ``fastp2p bench --plot``) uses it without loading torch."""
import os

from fastp2p.cpu_info import usable_cpus


def machine_load() -> dict:
    """``load_average`` (the last minute's, None where the system has none) and
    ``usable_cpus`` (the CPUs this process may run on), as ``describe`` records them."""
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"load_average": load, "usable_cpus": usable_cpus()}


def busy_note(env: dict, moment: str = "when the run began"):
    """What to say of a run whose machine was busy at ``moment`` (``env``: ``describe``'s or
    ``machine_load``'s, sampled then), else None. Busy: a load average of at least half the
    usable CPUs, whose time other processes then take from the timed jobs (a quick run on a
    2-core machine at load 4.5 put fastp2p's inference anywhere from 0.09x to 2.4x the
    reference)."""
    load, cpus = env.get("load_average"), env.get("usable_cpus")
    if load is None or not cpus or load < cpus / 2:
        return None
    return (f"load average {load:.1f} on {cpus} usable CPU(s) {moment}: other "
            "processes take time from the timed jobs, so its figures and ratios can be far "
            "off; measure on an idle machine")


def busy_notes(results: dict) -> list:
    """A ``busy_note`` for each of a run's two load samples that was busy: when it began
    (``environment``) and after its last job (``load_at_end``). Peers are timed one after
    another, so a load that came or went in between can flip a ratio (QA saw fastp2p's training
    at 0.07x, then 10.24x the reference a minute later): a busy end counts as a busy start."""
    samples = ((results.get("environment") or {}, "when the run began"),
               (results.get("load_at_end") or {}, "after its last job"))
    return [note for env, moment in samples if (note := busy_note(env, moment))]
