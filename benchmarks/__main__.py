"""``python -m benchmarks [options]``: the benchmark suite, same options as ``fastp2p bench``."""
import sys

from fastp2p.bench.command import main

sys.exit(main())
