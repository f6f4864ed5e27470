import json
import subprocess
import sys

import pytest
import torch

from training.checkpoint import checkpoint_path, load_checkpoint
from training.config import TrainConfig
from training.train import cosine_lr, train
from training.train_all import run
from zoo.errors import ZooError


def cfg(tmp_path, fmnist_dir, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "data_dir": str(fmnist_dir), "artifacts": str(tmp_path),
                          "batch_size": 32, **kw})


def test_checkpoint_holds_everything_to_rebuild(tmp_path, fmnist_dir):
    ckpt = train(cfg(tmp_path, fmnist_dir, model="dropout"), quiet=True)
    saved = torch.load(checkpoint_path(cfg(tmp_path, fmnist_dir, model="dropout")), weights_only=True)
    for key in ("name", "kwargs", "state_dict", "metrics", "history", "config", "classes", "preprocess"):
        assert key in saved
    assert saved["name"] == "dropout" and saved["kwargs"] == {"dropout": 0.5}
    assert saved["complete"] and saved["epoch"] == 1 and len(saved["history"]) == 1
    assert 0 <= ckpt["metrics"]["test_acc"] <= 1 and len(ckpt["metrics"]["test_per_class"]) == 10


def test_same_seed_same_result(tmp_path, fmnist_dir):
    a = train(cfg(tmp_path / "a", fmnist_dir, model="batchnorm"), quiet=True)
    b = train(cfg(tmp_path / "b", fmnist_dir, model="batchnorm"), quiet=True)
    assert a["metrics"] == b["metrics"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_resume_ends_with_the_same_weights(tmp_path, fmnist_dir):
    """Stopping after epoch 1 and resuming gives the weights of an uninterrupted 3-epoch run; the
    native mode trains in channels-last, its checkpoints hold the default layout."""
    straight = train(cfg(tmp_path / "s", fmnist_dir, model="dropout", epochs=3), quiet=True)
    train(cfg(tmp_path / "r", fmnist_dir, model="dropout", epochs=1), quiet=True)
    resumed = train(cfg(tmp_path / "r", fmnist_dir, model="dropout", epochs=3), quiet=True)
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert all(torch.equal(straight["state_dict"][k], resumed["state_dict"][k]) for k in straight["state_dict"])
    assert all(v.is_contiguous() for v in resumed["state_dict"].values())
    conv = next(s["exp_avg"] for s in resumed["optimizer"]["state"].values()
                if s["exp_avg"].dim() == 4 and s["exp_avg"].shape[1] > 1)  # a conv with several input channels
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_interrupted_run_resumes(tmp_path, fmnist_dir):
    """A checkpoint left mid-run (complete=False) is picked up at its epoch."""
    c = cfg(tmp_path, fmnist_dir, model="baseline", epochs=2)
    full = train(c, quiet=True)
    path = checkpoint_path(c)
    # Rewind the file to the state after epoch 1 by training a 1-epoch copy and marking it unfinished.
    partial = train(cfg(tmp_path / "p", fmnist_dir, model="baseline", epochs=1), quiet=True)
    partial["complete"] = False
    torch.save(partial, path)
    resumed = train(c, quiet=True)
    assert resumed["complete"] and resumed["epoch"] == 2
    assert all(torch.equal(full["state_dict"][k], resumed["state_dict"][k]) for k in full["state_dict"])


def test_mirroring_and_cosine_schedule_are_reproducible_and_resume(tmp_path, fmnist_dir, monkeypatch):
    """The photo recipe's knobs on any model: same seed, same weights; a stop after epoch 1 and a
    resume end with the weights of an uninterrupted run (the schedule spans all epochs)."""
    import training.train as trainer

    knobs = dict(model="batchnorm", hflip=True, schedule="cosine", epochs=2)
    after_epoch_1 = tmp_path / "after-epoch-1.pt"
    save = trainer.save_atomic

    def keep_epoch_1(ckpt, path):  # the file an interruption during epoch 2 would leave behind
        save(ckpt, path)
        if ckpt["epoch"] == 1:
            save(ckpt, after_epoch_1)

    monkeypatch.setattr(trainer, "save_atomic", keep_epoch_1)
    a = train(cfg(tmp_path / "a", fmnist_dir, **knobs), quiet=True)
    monkeypatch.undo()
    b = train(cfg(tmp_path / "b", fmnist_dir, **knobs), quiet=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert "epochs" in a["config_identity"]  # under a schedule, the number of epochs shapes every step
    path = checkpoint_path(cfg(tmp_path / "r", fmnist_dir, **knobs))
    path.parent.mkdir(parents=True)
    after_epoch_1.replace(path)
    resumed = train(cfg(tmp_path / "r", fmnist_dir, **knobs), quiet=True)
    assert resumed["history"][0] == a["history"][0]  # epoch 1 was not run again (same seconds)
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in a["history"]]
    assert all(torch.equal(a["state_dict"][k], resumed["state_dict"][k]) for k in a["state_dict"])


def test_shift_moves_each_image_by_its_own_offset_and_fills_with_the_background():
    from training.train import shifted

    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5) + 1
    gen = torch.Generator().manual_seed(3)
    d = torch.randint(-2, 3, (2, 2), generator=torch.Generator().manual_seed(3))
    out = shifted(x, 2, gen, fill=-1.0)
    for img, src, (dy, dx) in zip(out, x, d.tolist()):
        want = torch.full_like(src, -1.0)
        h, w = src.shape[1:]
        want[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            src[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        assert torch.equal(img, want), (dy, dx)
    assert torch.equal(shifted(x, 0, gen, fill=0.0), x)


def test_shift_and_label_smoothing_are_reproducible_and_change_the_weights(tmp_path, fmnist_dir):
    knobs = dict(model="baseline", epochs=1, shift=1, label_smoothing=0.1)
    a = train(cfg(tmp_path / "a", fmnist_dir, **knobs), quiet=True)
    b = train(cfg(tmp_path / "b", fmnist_dir, **knobs), quiet=True)
    plain = train(cfg(tmp_path / "p", fmnist_dir, model="baseline", epochs=1), quiet=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert not torch.equal(a["state_dict"]["features.0.weight"], plain["state_dict"]["features.0.weight"])
    assert {"shift": 1, "label_smoothing": 0.1}.items() <= a["config_identity"].items()
    assert "shift" not in plain["config_identity"]  # off: the study's checkpoints keep their identity


def test_cosine_lr():
    lr = cosine_lr(1e-3, 100)
    assert lr(0) == 1e-3 and lr(50) == pytest.approx(5e-4) and lr(100) == pytest.approx(0, abs=1e-12)
    assert all(lr(i) > lr(i + 1) for i in range(100))


def test_recipe_fills_what_is_not_given():
    study = TrainConfig(model="baseline").resolved()
    assert (study.epochs, study.batch_size, study.hflip, study.schedule) == (15, 32, False, "constant")
    photo = TrainConfig(model="photo").resolved()
    assert (photo.epochs, photo.batch_size, photo.lr, photo.hflip, photo.schedule) == (20, 32, 2e-3, True, "cosine")
    assert TrainConfig(model="photo", epochs=1, hflip=False).resolved().epochs == 1
    # Checkpoints trained before the photo recipe's knobs existed keep their identity.
    assert set(study.identity()) == set(TrainConfig.IDENTITY)
    assert {"hflip", "schedule", "epochs"} <= set(photo.identity())


def test_training_modules_import_one_way():
    """The data loaders sit below the trainer and the evaluations: importing them (and the shared
    helpers) pulls in neither the trainer, the model selection nor an evaluation."""
    code = ("import sys, training.data.kaggle, training.data.fashion_mnist, training.checkpoint, "
            "training.metrics, training.report; print(sorted(m for m in sys.modules if m in "
            "('training.train', 'training.data.select', 'training.kaggle_eval', 'training.auto_eval')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_changed_config_starts_over(tmp_path, fmnist_dir, capsys):
    train(cfg(tmp_path, fmnist_dir, model="baseline"), quiet=True)
    train(cfg(tmp_path, fmnist_dir, model="baseline", lr=5e-4))
    assert "starting over" in capsys.readouterr().err


def test_truncated_checkpoint_is_a_clear_error(tmp_path, fmnist_dir):
    c = cfg(tmp_path, fmnist_dir, model="baseline")
    train(c, quiet=True)
    path = checkpoint_path(c)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ZooError, match="unreadable checkpoint"):
        load_checkpoint(path)


def test_bad_config_values():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="Unknown schedule 'linear'; choose one of: constant, cosine"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="shift must be between 0 and 8"):
        TrainConfig(shift=9)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(ValueError, match="--dev is for the photo models"):
        train(TrainConfig(model="baseline", dev=True, epochs=1), quiet=True)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet"], "Unknown model 'resnet'"),
    (["--epochs", "ten"], "invalid int value: 'ten'"),
    (["--epochs", "-1"], "epochs must be a positive integer"),
])
def test_cli_bad_input_is_one_line(tmp_path, fmnist_dir, args, message):
    out = _cli("training.train", "--data-dir", str(fmnist_dir), "--artifacts", str(tmp_path / "a"), *args)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_cli_missing_data(tmp_path):
    out = _cli("training.train", "--data-dir", str(tmp_path / "nothing"), "--artifacts", str(tmp_path / "a"))
    assert out.returncode == 2 and "make data" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "a").exists()


def test_train_all_trains_reports_and_retrains_best(tmp_path, fmnist_dir):
    c = cfg(tmp_path, fmnist_dir, kaggle_dir=str(tmp_path / "no-kaggle"))
    run(c, jobs=2)
    results = json.loads((tmp_path / "reports" / "results.json").read_text())
    fm = [n for n, r in results.items()
          if r["dataset"] == "fashion-mnist" and "retrain_of" not in r and "members" not in r]
    assert len(fm) == 7
    # The ensemble is assembled from them, and the retrain below is of the best trained model.
    assert set(results["ensemble"]["members"]) <= set(fm) and results["ensemble"]["epochs"] is None
    for name in fm:
        r = results[name]
        assert {"params", "train_acc", "val_acc", "test_acc", "epochs", "seconds"} <= set(r)
        assert (tmp_path / "reports" / f"{name}_curves.png").stat().st_size > 0
    retrained = [r for r in results.values() if "retrain_of" in r]
    assert len(retrained) == 1
    best = max(fm, key=lambda n: results[n]["val_acc"])
    assert retrained[0]["retrain_of"] == best
    assert (tmp_path / "reports" / "val_loss_all.png").exists()
    assert "| `baseline` |" in (tmp_path / "reports" / "results.md").read_text()


def test_ctrl_c_then_rerun_resumes_to_the_same_weights(tmp_path):
    """A real interrupted run (SIGINT mid-epoch) resumes and ends where an uninterrupted run ends."""
    import signal
    import time

    from tests.conftest import make_fashion_mnist

    data = make_fashion_mnist(tmp_path / "data", n_train=4000, n_test=100)
    epochs = 3
    args = ["training.train", "--model", "baseline", "--epochs", str(epochs), "--data-dir", str(data)]
    # Ctrl-C's default action even when the tests themselves run with SIGINT ignored (a background
    # job of a non-interactive shell: Python then installs no KeyboardInterrupt handler).
    proc = subprocess.Popen([sys.executable, "-m", *args, "--artifacts", str(tmp_path / "i")],
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = tmp_path / "i" / "checkpoints" / "baseline.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in err
    assert "Traceback" not in err
    partial = load_checkpoint(ckpt)
    assert not partial["complete"] and 1 <= partial["epoch"] < epochs
    resumed = _cli(*args, "--artifacts", str(tmp_path / "i"))
    assert resumed.returncode == 0 and f"resuming after epoch {partial['epoch']}" in resumed.stderr
    a = load_checkpoint(ckpt)
    b = train(TrainConfig(model="baseline", epochs=epochs, data_dir=str(data), artifacts=str(tmp_path / "s")),
              quiet=True)  # the same run uninterrupted (in this process: the same arithmetic)
    assert a["metrics"] == b["metrics"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_train_all_retrain_and_ensemble_overlap_the_photo_models(tmp_path, capfd):
    """The heaviest model (`colour`, several times any Fashion-MNIST model's multiply-accumulates)
    starts first; the train+validation retrain and the ensemble's assembly are queued as soon as the
    last Fashion-MNIST model finishes, ahead of the other photo models, so they run beside them
    instead of alone at the end (here one job at a time, so the order the jobs finish in is the order
    they ran in)."""
    import re

    from tests.conftest import make_fashion_mnist
    from tests.test_kaggle import make_kaggle
    from zoo.registry import assembled_models, list_models, trainable_models

    data = make_fashion_mnist(tmp_path / "data", n_train=600, n_test=100)
    make_kaggle(tmp_path / "kaggle")
    run(cfg(tmp_path / "a", data, kaggle_dir=str(tmp_path / "kaggle")), jobs=1)
    order = re.findall(r"^\[([\w+]+)\] (?:done in|assembled) ", capfd.readouterr().err, re.M)
    retrain = [n for n in order if n.endswith("+trainval")]
    assert len(retrain) == 1
    assert sorted(order) == sorted(trainable_models() + assembled_models() + retrain)
    fashion = [order.index(n) for n in trainable_models("fashion-mnist")]
    after = [order.index(n) for n in retrain + assembled_models()]
    photos = [order.index(n) for n in list_models("kaggle") if n != "colour"]
    assert order[0] == "colour"
    assert max(fashion) < min(after) and max(after) < min(photos)
