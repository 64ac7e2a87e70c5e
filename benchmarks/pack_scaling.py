"""``fastp2p pack`` at scale: pairs/s per core and peak memory at several dataset sizes.

Writes one synthetic set (``fastp2p pack --synthetic``: 256x256 A|B JPEGs, quality 90) of the
largest size, links its first N files into a folder per size, and packs each at load_size 286
(JPEG decode + two bicubic resizes + write) in a fresh process, so every size's peak memory is
its own. Reported per size: wall pairs/s, pairs per CPU-second of all the packing processes
(user + system: the per-core rate, which holds on a machine shared with other jobs where wall
time does not), peak RSS of the main process and of the largest worker, and the load average
before and after. Streaming shows as peak RSS that does not grow with N.

Run: ``python benchmarks/pack_scaling.py --counts 2000,10000 --work /tmp/pack-scaling``
(needs about 0.55 MB of disk per pair for the packed copy).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from fastp2p.cpu_info import cpu_model

CHILD = """
import json, resource, sys, time
from fastp2p.data.pack import pack_phase
root, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
wall, cpu = time.perf_counter(), time.process_time()
index = pack_phase(root, out, "train", load_size=286, workers=workers, progress=False)
wall = time.perf_counter() - wall
me = resource.getrusage(resource.RUSAGE_SELF)
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"pairs": index["count"], "shards": len(index["shards"]), "wall_s": wall,
                  "cpu_s": me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime,
                  "main_peak_rss_mb": me.ru_maxrss / 1024,
                  "worker_peak_rss_mb": children.ru_maxrss / 1024}))
"""



def linked_subset(source: Path, target: Path, count: int) -> Path:
    """``target/train`` holding hard links to the first ``count`` files of ``source``."""
    folder = target / "train"
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in source.iterdir() if p.suffix == ".jpg")[:count]
    for name in names:
        if not (folder / name).exists():
            os.link(source / name, folder / name)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="2000,10000", help="dataset sizes (comma-separated)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (kept)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    counts = sorted(int(c) for c in args.counts.split(","))
    source = args.work / "source"
    subprocess.run([sys.executable, "-m", "fastp2p", "pack", "--synthetic", str(counts[-1]),
                    str(source), "--no-progress", "--workers", str(args.workers)], check=True)
    print(f"{cpu_model()}, {len(os.sched_getaffinity(0))} usable cores, "
          f"{args.workers} packing workers")
    for count in counts:
        data = linked_subset(source / "train", args.work / f"n{count}", count)
        out = args.work / f"packed-{count}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        load_before = os.getloadavg()[0]
        result = subprocess.run([sys.executable, "-c", CHILD, str(data), str(out),
                                 str(args.workers)], check=True, capture_output=True, text=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"N={row['pairs']:7d}: {row['pairs'] / row['wall_s']:7.1f} pairs/s wall, "
              f"{row['pairs'] / row['cpu_s']:6.1f} pairs per CPU-second, peak RSS main "
              f"{row['main_peak_rss_mb']:.0f} MB, largest worker {row['worker_peak_rss_mb']:.0f}"
              f" MB, {row['shards']} shards; load average {load_before:.1f} -> "
              f"{os.getloadavg()[0]:.1f}")
        subprocess.run(["rm", "-rf", str(out)], check=True)   # the packed copy is large
    return 0


if __name__ == "__main__":
    sys.exit(main())
