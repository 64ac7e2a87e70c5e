"""A benchmark result names the build it measured: an installed fastp2p records commit
"unknown" and its version stays 0.1.0 from commit to commit, so two installed builds' results
could not be told apart (QA r59, after --version and info got the fingerprint)."""
import torch

from fastp2p.bench import environment
from fastp2p.bench.render import markdown
from fastp2p.build_fingerprint import build_fingerprint


def test_the_environment_records_the_build_and_the_table_names_it(tmp_path):
    env = environment.describe(torch.device("cpu"), tmp_path)   # tmp_path: no git checkout
    assert env["commit"] == "unknown" and env["build"] == build_fingerprint()
    header = markdown({"mode": "quick", "complete": True, "environment": env, "training": [],
                       "config": {"network_description": "unet_64", "steps": 3, "warmup": 1}})
    assert header.splitlines()[0].endswith(f"commit unknown, build {env['build']}")
