"""Runs you can trust and carry: predictions see exactly the training run's evaluation preprocessing, and a
run directory moved elsewhere predicts, exports and resumes without the pretrained weights file."""

from __future__ import annotations

import csv
import json
import shutil

import lightning as L
import pytest
import torch

from tests.conftest import CONFIGS, last_line, run_cli
from tests.transfer_helpers import make_folder, save_timm_weights
from trainforge.checkpoints import build_datamodule, run_config
from trainforge.data.datamodule import TransformDataset
from trainforge.launch import main

QUICK = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--wandb.enabled=false",
]


class EvalInputs(L.Callback):
    """The validation inputs of the fit itself, by sample id (what the run's own evaluation saw)."""

    def __init__(self) -> None:
        self.inputs: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        val = trainer.datamodule.view("val")
        self.inputs = {val.ids[i]: val[i][0] for i in range(len(val))}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_same_image_gives_the_same_tensor_in_fit_eval_and_both_predict_paths(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "imgs", {"train": 6, "test": 2})
    monkeypatch.setenv("TRAINFORGE_CONFIGS", str(CONFIGS))
    monkeypatch.chdir(tmp_path)
    seen = EvalInputs()
    # resnet18's pretrained config crops 95% (timm's default is 87.5%) with bicubic resizing: a predict path
    # rebuilding its transform without the run's preprocessing resizes 34 -> 32 differently.
    main(
        ["fit", "--experiment", "finetune", f"--data.root={folder}", "--data.image_size=32", "--data.num_workers=0",
         "--model.backbone=resnet18", "--finetune.head_init=default", "--trainer.max_epochs=1", "--run.name=pp",
         f"--run.root={tmp_path / 'runs'}", *QUICK],
        callbacks=[seen],
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "finetune" / "pp"
    saved = json.loads((run_dir / "preprocessing.json").read_text())
    assert saved["crop_pct"] == 0.95 and saved["input_size"] == [3, 32, 32]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    datamodule = build_datamodule(run_config(ckpt), ckpt)  # no model attached: the checkpoint says how
    path = next(iter(seen.inputs))
    files = TransformDataset(datamodule.files_dataset([path]), datamodule.build_transforms("eval"))
    assert torch.equal(files[0][0], seen.inputs[path])
    assert torch.equal(datamodule.eval_view("val")[0][0], seen.inputs[datamodule.eval_view("val").ids[0]])
    plain = build_datamodule(run_config(ckpt))  # without the saved preprocessing: timm's generic 87.5% crop
    assert not torch.equal(TransformDataset(plain.files_dataset([path]), plain.build_transforms("eval"))[0][0],
                           seen.inputs[path])  # fmt: skip
    # `make predict` (infer) and `predict` on a folder holding that image give the same probabilities.
    single = tmp_path / "one"
    single.mkdir()
    shutil.copy(path, single / "x.jpg")
    run_cli("infer", str(run_dir), "--data", str(single), "--out", str(tmp_path / "infer.csv"), cwd=tmp_path)
    # The checkpoint `infer` reports from (finetune's wise.ckpt: the probe end unless the fine-tune won), not last.ckpt.
    reported = json.loads((run_dir / "summary.json").read_text())["checkpoint_used"]
    run_cli("predict", "--ckpt_path", reported, f"--data.predict_dir={single}", cwd=tmp_path)
    rows = [next(csv.DictReader(p.open())) for p in (tmp_path / "infer.csv", run_dir / "predictions.csv")]
    probs = [[float(r[k]) for k in r if k.startswith("prob_")] for r in rows]
    assert probs[0] == pytest.approx(probs[1], abs=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_moved_run_predicts_exports_and_resumes_without_the_pretrained_file(tmp_path):
    folder = make_folder(tmp_path / "imgs", {"train": 6, "test": 2})
    weights = tmp_path / "w.safetensors"
    save_timm_weights(weights)
    common = ["--data.image_size=32", "--data.num_workers=0", "--model.backbone=resnet10t", *QUICK]
    run_cli(
        "fit", "--experiment", "finetune", f"--data.root={folder}", f"--model.weights={weights}",
        "--trainer.max_epochs=1", "--run.name=carry", f"--run.root={tmp_path / 'runs'}", *common, cwd=tmp_path,
    )  # fmt: skip
    moved = tmp_path / "elsewhere" / "finetune" / "carry"
    moved.parent.mkdir(parents=True)
    shutil.move(tmp_path / "runs" / "finetune" / "carry", moved)
    weights.unlink()  # the ImageNet file is gone; the checkpoint must not need it
    shutil.copytree(folder / "test", tmp_path / "new-images")  # images the run never saw in that place

    run_cli("infer", str(moved), "--data", str(tmp_path / "new-images"), cwd=tmp_path)
    with (moved / "predictions_new-images_single.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 6
    run_cli("export", str(moved), cwd=tmp_path)
    assert json.loads((moved / "export" / "export.json").read_text())["onnx"]["max_abs_diff"] <= 1e-4
    resumed = run_cli(
        "fit", "--experiment", "finetune", f"--data.root={folder}", f"--model.weights={weights}",
        "--trainer.max_epochs=2", "--run.name=carry", f"--run.root={tmp_path / 'elsewhere'}", *common, cwd=tmp_path,
    )  # fmt: skip
    assert (
        "Resuming run" in resumed.stderr + resumed.stdout
        and last_line(resumed.stdout) == f"run directory: {moved}"
    )
    assert json.loads((moved / "summary.json").read_text())["epoch"] == 2
