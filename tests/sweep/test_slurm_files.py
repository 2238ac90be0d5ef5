"""The SLURM executor's files and checks, without a cluster: results survive their file
exactly (bytes, kept stitches, maps), a node-local run folder is refused on a cluster of
several nodes, and sbatch options reach submitit's parameters."""

from pathlib import Path

import pytest
import torch

from plato.errors import PlatoError
from plato.sweep import slurm
from plato.sweep.slurm import SlurmOptions, read_results, write_results


def test_outcomes_come_back_from_their_file_exactly(tmp_path):
    outcomes = [
        {"key": "a", "started": 1.5, "status": "done", "result": {"stitched_accuracy": 0.9},
         "correct": bytes([255, 0, 7]), "host": "node1",
         "stitch_state": {"map.weight": torch.randn(4, 3, 1, 1)},
         "saliency_maps": {"ig/stitched": torch.rand(2, 8, 8).half()}},
        {"key": "b", "started": 1.5, "status": "unstitchable", "reason": "a vector"},
    ]
    write_results(tmp_path / "g.safetensors", outcomes)
    back = read_results(tmp_path / "g.safetensors")
    assert back[1] == outcomes[1]
    assert back[0]["correct"] == outcomes[0]["correct"]
    assert torch.equal(back[0]["stitch_state"]["map.weight"],
                       outcomes[0]["stitch_state"]["map.weight"])
    assert torch.equal(back[0]["saliency_maps"]["ig/stitched"],
                       outcomes[0]["saliency_maps"]["ig/stitched"])
    assert {k: v for k, v in back[0].items() if k not in ("correct", "stitch_state",
                                                          "saliency_maps")} == \
        {k: v for k, v in outcomes[0].items() if k not in ("correct", "stitch_state",
                                                           "saliency_maps")}


def test_a_node_local_run_folder_is_refused_on_a_cluster(monkeypatch):
    monkeypatch.setattr(slurm, "_scheduler", lambda *args: "2\n1\n")  # sinfo: 3 nodes
    with pytest.raises(PlatoError, match="node-local file system .* 3 nodes"):
        slurm.check_shared(Path("/tmp/plato-run"), None)
    slurm.check_shared(Path("/work/runs/x"), None)  # a shared place: fine
    monkeypatch.setattr(slurm, "_scheduler", lambda *args: "1\n")
    slurm.check_shared(Path("/tmp/plato-run"), None)  # one node sees its own /tmp


def test_options_become_submitits_parameters():
    params = SlurmOptions(partition="gpu", time_min=30, cpus_per_job=4, gpus_per_job=1,
                          mem_gb=16, account="lab", array_parallelism=8,
                          extra={"qos": "low"}, setup=["module load cuda"]).parameters("plato-x")
    assert params == {"name": "plato-x", "timeout_min": 30, "cpus_per_task": 4,
                      "slurm_array_parallelism": 8, "slurm_partition": "gpu", "mem_gb": 16,
                      "slurm_account": "lab", "gpus_per_node": 1,
                      "slurm_additional_parameters": {"qos": "low"},
                      "slurm_setup": ["module load cuda"]}


def test_no_slurm_here_is_one_line(tmp_path, monkeypatch):
    from plato.sweep.jobs import Job

    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on it
    job = Job("k", "s", "a", "b", "trained->trained", 0, "p", 0, "q", 0)
    with pytest.raises(PlatoError, match="sbatch is not on this machine's PATH"):
        slurm.SlurmExecutor(tmp_path).run([job], {}, None, None, lambda *a: None)
