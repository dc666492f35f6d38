"""The trainer in-process on the tiny model and fake data: optimiser groups and schedule, loss going down, AMP,
checkpoints (contents, rotation, loading in `load_model`), the command line's checks."""
from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from helpers.own_data import make_scenes, own_datasets
from helpers.tiny import tiny_model

from tarvis_fast.config import load_config, save_config
from tarvis_fast.data.sample import ClipSample, collate
from tarvis_fast.model import load_model
from tarvis_fast.tasks import Task
from tarvis_fast.training import cli
from tarvis_fast.training.checkpoint import load_checkpoint
from tarvis_fast.training.optim import (
    GRAD_CLIP_NORM,
    WEIGHT_DECAY,
    lr_factor,
)
from tarvis_fast.training.trainer import Trainer

from .fake_data import FakeTrainLoader, fake_batch, fake_sample

TEST_TRAINING = {
    "batch_size": 2, "num_iterations": 4, "checkpoint_save_interval": 2, "num_sampled_points_for_mask_loss": 256,
    "dataset_list": ["YOUTUBE_VIS", "KITTI_STEP", "DAVIS", "BURST"], "dataset_weights": [1, 1, 1, 1],
    "losses": {"panoptic_instance_num_points": 256, "panoptic_semantic_num_points": 256},
}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a small shared CPU, two threads per test mostly wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_config(folder: Path, **training) -> Path:
    """A config YAML for the tiny runs; `training` entries replace TEST_TRAINING's."""
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump({"training": {**TEST_TRAINING, **training}}))
    return path


def make_trainer(tmp_path: Path, amp_dtype: torch.dtype | None = None, **training) -> Trainer:
    cfg = load_config(write_config(tmp_path, **training))
    (tmp_path / "run").mkdir()
    return Trainer(tiny_model(), cfg, tmp_path / "run", device=torch.device("cpu"), amp_dtype=amp_dtype)


# -- optimiser and schedule ------------------------------------------------------------------------------------


def test_optimizer_groups_follow_the_model(tmp_path):
    trainer = make_trainer(tmp_path, base_lr=2e-4)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["backbone"]["lr"] == pytest.approx(2e-4 * 0.1)  # the original's backbone factor, the default
    (tmp_path / "other").mkdir()
    from_scratch = make_trainer(tmp_path / "other", base_lr=2e-4, backbone_lr_factor=1.0)
    assert {g["name"]: g["lr"] for g in from_scratch.optimizer.param_groups}["backbone"] == pytest.approx(2e-4)
    assert groups["head"]["lr"] == pytest.approx(2e-4) and groups["head"]["weight_decay"] == WEIGHT_DECAY
    assert groups["head_no_decay"]["weight_decay"] == 0.0
    assert isinstance(trainer.optimizer, torch.optim.AdamW)


def test_fused_adamw_steps_as_the_reference_rule(tmp_path):
    """The trainer's AdamW takes torch's fused kernel on CPU; its updates equal the for-loop implementation's."""
    trainer = make_trainer(tmp_path)
    assert trainer.optimizer.defaults["fused"]
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    reference_params = [p.detach().clone().requires_grad_() for p in params]
    kept = ("lr", "weight_decay", "betas", "eps")  # the rule's settings, not the implementation's switches
    reference = torch.optim.AdamW([{**{k: group[k] for k in kept}, "params": copies}
                                   for group, copies in _split_like(trainer.optimizer.param_groups, reference_params)],
                                  foreach=False, fused=False)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(params, reference_params):
            p.grad = torch.randn(p.shape, generator=generator)
            q.grad = p.grad.clone()
        trainer.optimizer.step()
        reference.step()
    for p, q in zip(params, reference_params):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def _split_like(groups: list[dict], flat: list[torch.Tensor]) -> list[tuple[dict, list[torch.Tensor]]]:
    out, start = [], 0
    for group in groups:
        out.append((group, flat[start:start + len(group["params"])]))
        start += len(group["params"])
    return out


def test_lr_warms_up_linearly_then_decays_in_steps(tmp_path):
    training = load_config(None, ["--cfg.training.lr_warmup_iterations", "4", "--cfg.training.lr_decay_steps",
                                  "[6, 8]", "--cfg.training.lr_decay_rates", "[0.1, 0.5]"]).training
    assert [lr_factor(s, training) for s in range(10)] == pytest.approx(
        [0, 0.25, 0.5, 0.75, 1, 1, 0.1, 0.1, 0.05, 0.05])
    trainer = make_trainer(tmp_path, lr_warmup_iterations=4)
    for step in range(3):
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(trainer.cfg.training.base_lr *
                                                                         0.1 * step / 4)
        trainer.scheduler.step()


# -- the loop --------------------------------------------------------------------------------------------------


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tmp_path):
    trainer = make_trainer(tmp_path, base_lr=1e-3)
    batch = fake_batch(0, 0, 4, 2)  # a VOS batch of two clips
    assert batch.task is Task.VOS
    losses = []
    for _ in range(6):
        losses.append(trainer.micro_step(batch, 0, 0, 1)["TotalL"].item())
        grad_norm = trainer.optimizer_step()
    assert losses[-1] < 0.9 * losses[0], losses
    assert grad_norm.item() > GRAD_CLIP_NORM  # the norm is reported before clipping


@pytest.mark.parametrize("task", [Task.VIS, Task.VPS, Task.VOS, Task.PET])
def test_a_clip_off_the_64_grid_trains_as_if_padded_beforehand(tmp_path, task):
    """The model pads a 40 x 40 clip to 64 x 64 and its logits cover that; the trainer pads the targets alike
    (masks empty, the panoptic ignore mask set), so the losses equal those of the clip padded by hand."""
    generator = torch.Generator().manual_seed(0)
    clip = fake_sample(task, generator, size=40)
    pad = (0, 24, 0, 24)

    def grow(x, value):
        return None if x is None else torch.nn.functional.pad(x, pad, value=value)

    points = None if clip.points is None else clip.points * 40 / 64
    padded = ClipSample(clip.dataset, task, grow(clip.images, 128), grow(clip.masks, False), clip.classes,
                        grow(clip.semantic, 0), grow(clip.ignore, True), points)
    losses = []
    for name, sample in (("clip", clip), ("padded", padded)):
        (tmp_path / name).mkdir()
        losses.append(make_trainer(tmp_path / name).micro_step(collate([sample]), 0, 0, 1))
    for name, value in losses[1].items():
        torch.testing.assert_close(losses[0][name], value, msg=name)


def test_gradients_are_clipped_over_the_whole_model(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.micro_step(fake_batch(0, 0, 0, 1), 0, 0, 1)
    trainer.scaler.unscale_(trainer.optimizer)
    from tarvis_fast.training.optim import clip_gradients

    clip_gradients(trainer.model)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()
                                                 if p.grad is not None]))
    assert norm.item() == pytest.approx(GRAD_CLIP_NORM, rel=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_an_amp_step_runs(tmp_path, dtype):
    """bf16 steps at once; fp16's GradScaler starts at a scale of 2^16, skips the steps whose gradients overflow
    and halves the scale until one fits."""
    trainer = make_trainer(tmp_path, amp_dtype=dtype)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    for step in range(20):
        losses = trainer.micro_step(fake_batch(0, 0, 0, 1), 0, 0, 1)
        grad_norm = trainer.optimizer_step()
        if math.isfinite(grad_norm.item()):
            break
    assert math.isfinite(losses["TotalL"].item()) and math.isfinite(grad_norm.item())
    assert trainer.scaler.is_enabled() == (dtype is torch.float16)
    assert step == 0 or dtype is torch.float16
    changed = sum(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters()))
    assert changed > len(before) // 2


def test_a_skipped_fp16_step_still_counts_in_the_schedule_without_a_warning(tmp_path):
    """GradScaler hands the fused AdamW its inf check, so the optimiser's step is called (and skips the update
    itself): the schedule advances as in the original, and torch sees no scheduler step before an optimiser step."""
    trainer = make_trainer(tmp_path, amp_dtype=torch.float16)
    trainer.micro_step(fake_batch(0, 0, 0, 1), 0, 0, 1)  # GradScaler makes its scale on first use
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.scaler.update(new_scale=2.0 ** 120)  # overflows the gradients: GradScaler skips the step
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.micro_step(fake_batch(0, 0, 0, 1), 0, 0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.optimizer_step()
    assert all(torch.equal(b, p) for b, p in zip(before, trainer.model.parameters()))
    assert trainer.scheduler.last_epoch == 1


def test_activation_checkpointing_gives_the_same_gradients(tmp_path):
    grads = []
    for checkpointing in (False, True):
        folder = tmp_path / str(checkpointing)
        folder.mkdir()
        trainer = make_trainer(folder, checkpointing=checkpointing)
        trainer.micro_step(fake_batch(0, 0, 0, 1), 0, 0, 1)
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_train_saves_every_interval_and_keeps_the_last_k(tmp_path):
    trainer = make_trainer(tmp_path, num_iterations=5, max_ckpts_to_keep=2)
    loader = FakeTrainLoader(trainer.cfg, rank=0, world_size=1, micro_batch_size=1)
    assert trainer.train(loader) == 5
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("*.pth")) == ["000004.pth", "000005.pth"]  # 2, 4 and the end; keep 2
    state = load_checkpoint(run / "000005.pth")
    assert state["iteration"] == 5 and state["world_size"] == 1 and len(state["rng"]) == 1
    assert state["scheduler"]["last_epoch"] == 5
    assert not list(run.glob(".*"))  # no temporary left behind
    logs = (run / "logs" / "out.log").read_text()
    assert "TotalL" in logs and "eta" in logs
    assert list((run / "logs" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_train_py_end_to_end_on_the_data_pipeline_and_infer_loads_the_result(tmp_path):
    """The command line with nothing replaced: the real data loader (datasets in the YouTube-VIS, DAVIS and VIPSeg
    layouts from tests/data) and build_model (ResNet-50 with a small head). load_model, which infer.py uses, reads
    the checkpoint with the config.yaml the run wrote."""
    datasets = own_datasets(tmp_path, make_scenes(2), [64])
    model = {"hidden_dim": 32, "num_heads": 2, "decoder_layers": 1, "decoder_ffn_dim": 32, "neck_layers": 1,
             "neck_ffn_dim": 32, "object_encoder_layers": 1, "num_object_queries": 4}
    training = {**TEST_TRAINING, "num_iterations": 3, "batch_size": 1, "sample_chunking_factor": 1,
                "dataset_list": list(datasets), "dataset_weights": [1, 1, 1]}
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": model, "training": training, "datasets": datasets}))
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="no ImageNet weights"):
        code = cli.main(["--model_dir", str(run), "--cfg", str(config), "--device", "cpu", "--num_workers", "0"])
    assert code == 0
    assert "it 3/3" in (run / "logs" / "out.log").read_text()
    model = load_model(run / "000003.pth")
    state = load_checkpoint(run / "000003.pth")["model"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


# -- the command line's checks -----------------------------------------------------------------------------------


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv, build_model=lambda cfg: tiny_model(), build_loader=FakeTrainLoader)
    return code, capsys.readouterr().err


def test_a_missing_config_is_one_line(tmp_path, capsys):
    code, err = run_cli(["--model_dir", str(tmp_path / "run"), "--cfg", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and err.startswith("error: ") and "nope.yaml" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_new_run_needs_cfg_and_model_dir(tmp_path, capsys):
    code, err = run_cli(["--model_dir", str(tmp_path / "run")], capsys)
    assert code == 2 and err.startswith("error: --cfg: required for a new run")
    code, err = run_cli(["--cfg", str(write_config(tmp_path))], capsys)
    assert code == 2 and err.startswith("error: --model_dir: required")


def test_batch_size_must_divide_among_processes(tmp_path):
    argv = ["--model_dir", str(tmp_path / "run"), "--cfg", str(write_config(tmp_path, batch_size=4))]
    with pytest.raises(ValueError, match=r"--cfg.training.batch_size: 4 is not divisible by 3 process\(es\) x 1"):
        cli.parse_launch(argv, env={"WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0"})
    launch = cli.parse_launch([*argv, "--max_samples_per_gpu", "2"], env={"WORLD_SIZE": "2"})
    assert launch.world_size == 2 and launch.micro_batch_size == 2


def test_a_folder_holding_a_run_or_files_is_never_overwritten(tmp_path, capsys):
    config = write_config(tmp_path)
    for name, content in (("config.yaml", "mine"), ("notes.txt", "keep me")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_text(content)
        code, err = run_cli(["--model_dir", str(folder), "--cfg", str(config)], capsys)
        assert code == 2 and err.startswith(f"error: {folder}: ")
        assert [p.name for p in folder.iterdir()] == [name] and (folder / name).read_text() == content
    assert "--restore_session" in run_cli(["--model_dir", str(tmp_path / "config.yaml"), "--cfg", str(config)],
                                          capsys)[1]


def test_restore_checks_its_arguments(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    code, err = run_cli(["--restore_session", str(run)], capsys)
    assert code == 2 and "holds no checkpoint" in err
    cfg = load_config(write_config(tmp_path))
    save_config(cfg, run / "config.yaml")
    torch.save({"model": {}}, run / "000002.pth")
    other = write_config(tmp_path, batch_size=4)
    code, err = run_cli(["--restore_session", str(run / "000002.pth"), "--cfg", str(other)], capsys)
    assert code == 2 and "differs from the restored run" in err
    code, err = run_cli(["--restore_session", str(run / "000002.pth"), "--finetune_from", str(run)], capsys)
    assert code == 2 and err.startswith("error: --finetune_from:")


def test_finetune_from_starts_from_the_newest_checkpoint_of_a_run(tmp_path, capsys):
    config = write_config(tmp_path, num_iterations=2)
    pretrain = tmp_path / "pretrain"
    assert run_cli(["--model_dir", str(pretrain), "--cfg", str(config), "--device", "cpu"], capsys)[0] == 0
    launch = cli.parse_launch(["--model_dir", str(tmp_path / "finetune"), "--cfg", str(config), "--finetune_from",
                               str(pretrain)])
    assert launch.finetune_checkpoint == pretrain / "000002.pth"
    with pytest.warns(UserWarning, match="without --finetune_from"):  # a fine-tuning config, from scratch
        cli.train(dataclasses.replace(launch, finetune_checkpoint=None, model_dir=tmp_path / "scratch"),
                  build_model=lambda cfg: tiny_model(), build_loader=FakeTrainLoader)
    assert cli.train(launch, build_model=lambda cfg: tiny_model(seed=5), build_loader=FakeTrainLoader) == 0
    assert f"fine-tuning from {pretrain / '000002.pth'}" in (tmp_path / "finetune" / "logs" / "out.log").read_text()
    capsys.readouterr()
    code, err = run_cli(["--model_dir", str(tmp_path / "other"), "--cfg", str(config), "--finetune_from",
                         str(tmp_path)], capsys)
    assert code == 2 and err.startswith(f"error: {tmp_path}: --finetune_from needs a run's folder")
