"""Training off the CPU: ``--device`` resolution, CPU checkpoints, and a training step whose
every tensor follows the model's device.

No GPU here, so the step runs on torch's ``meta`` device: shapes only, but mixing a CPU
constant into it raises at once, exactly where a CUDA run would fail."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.device import cpu_state, resolve  # noqa: E402
from training.networks.interpolator import Interpolator  # noqa: E402
from training.networks.network import ReceiverNet  # noqa: E402
from training.samples import Batch  # noqa: E402
from training.train_receiver import LossWeights, step_loss  # noqa: E402


def test_resolve_cpu_auto_and_refusals():
    assert resolve("cpu") == torch.device("cpu")
    assert resolve("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            resolve("cuda")
    with pytest.raises(SystemExit, match="--device"):
        resolve("tpu")
    with pytest.raises(SystemExit, match="only cpu, cuda"):
        resolve("meta")


def test_cpu_state_is_a_snapshot_not_the_live_weights():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    snap, opt_snap = cpu_state(net), cpu_state(opt.state_dict())
    before = snap["weight"].clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    assert torch.equal(snap["weight"], before)
    assert all(v.device.type == "cpu" for s in opt_snap["state"].values()
               for v in s.values() if isinstance(v, torch.Tensor))


def test_a_receiver_training_step_stays_on_the_models_device():
    dev = torch.device("meta")
    net = ReceiverNet().to(dev)
    b, s = 2, 64
    batch = Batch(window=torch.rand(b, 5, 3, 8, 8), mel=torch.rand(b, 20, 40),
                  identity=torch.rand(b, 3, s, s), target=torch.rand(b, 3, s, s),
                  weight=torch.ones(b, 1, s, s), points_target=torch.rand(b, 31, 2),
                  points_identity=torch.rand(b, 31, 2), points_valid=torch.ones(b)).to(dev)
    assert batch.identity.device == dev and batch.weight.device == dev
    # The trainer's own objective, every term on.
    weights = LossWeights(freq=0.05, grad=1.0, landmark_motion=1.0, equivariance=1.0)
    loss, terms = step_loss(net, batch, weights, torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.device == dev and all(t.device == dev for t in terms)
    out = net(batch.window, batch.mel, batch.identity)
    assert out.device == dev and out.shape == (b, 3, s, s)
    assert all(p.grad is not None and p.grad.device == dev for p in net.parameters())


def test_the_interpolator_runs_on_the_models_device():
    dev = torch.device("meta")
    y = Interpolator().to(dev)(torch.rand(2, 3, 4, 8, 8, device=dev))
    assert y.device == dev and y.shape == (2, 3, 4, 8, 8)
