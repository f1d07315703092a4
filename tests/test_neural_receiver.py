"""Neural receiver: ONNX vs PyTorch agreement, weights hash verification, streaming output."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from codec.receiver.neural import weights
from codec.receiver.neural.weights import (
    ROLES,
    ModelError,
    ModelIntegrityError,
    find_model,
    hashed_name,
    load_verified,
    weights_available,
)
from codec.types import AudioChunk, IdentityFrame, LowResFrame

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # several threads crawl on a loaded 2-core box

SHIPPED = weights_available()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="no trained weights in models/")


def _fresh_modules() -> dict[str, torch.nn.Module]:
    from training.export_onnx import _AnimatorByName
    from training.networks.interpolator import Interpolator
    from training.networks.network import ReceiverNet

    torch.manual_seed(0)
    net = ReceiverNet()
    # Non-trivial weights everywhere (the zero-initialised heads would hide disagreements).
    with torch.no_grad():
        for m in (net, interp := Interpolator()):
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))
    from training.networks.mouth_driver import MouthDriver

    mouth = MouthDriver()
    with torch.no_grad():  # inputs are randn * 4 - 6: outputs mostly inside the clamp
        mouth.mu.fill_(-6.0)
        mouth.sd.fill_(4.0)
        mouth.linear.weight.copy_(0.02 * torch.randn_like(mouth.linear.weight))
        mouth.linear.bias.fill_(0.2)
    return {"interpolator": interp.eval(), "identity_encoder": net.identity_encoder.eval(),
            "animator": _AnimatorByName(net).eval(), "mouth": mouth.eval()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    from training.export_onnx import to_onnx

    d = tmp_path_factory.mktemp("models")
    mods = _fresh_modules()
    for role, m in mods.items():
        data = to_onnx(m, role)
        (d / hashed_name(role, data)).write_bytes(data)
    return mods, d


@pytest.mark.parametrize("role", ROLES)
def test_onnx_runtime_agrees_with_pytorch(exported: tuple[dict, Path], role: str) -> None:
    from training.export_onnx import max_abs_diff

    mods, d = exported
    data = load_verified(find_model(role, d))
    # Outputs are pixel values in [0, 255] or features of order 1.
    assert max_abs_diff(mods[role], data, role, seed=3) < 0.05


def _graph_io(data: bytes) -> tuple[list, list]:
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return ([(t.name, tuple(t.shape)) for t in sess.get_inputs()],
            [(t.name, tuple(t.shape)) for t in sess.get_outputs()])


def _contract_io(role: str) -> tuple[list, list]:
    from codec.receiver.neural.contract import NETWORKS

    net = NETWORKS[role]
    return ([(t.name, t.shape) for t in net.inputs], [(t.name, t.shape) for t in net.outputs])


@pytest.mark.parametrize("role", ROLES)
def test_exported_graphs_follow_the_contract(exported: tuple[dict, Path], role: str) -> None:
    """Names, order and shapes of every network's inputs and outputs are the contract's."""
    _, d = exported
    assert _graph_io(load_verified(find_model(role, d))) == _contract_io(role)


@needs_shipped
@pytest.mark.parametrize("role", ROLES)
def test_shipped_graphs_follow_the_contract(role: str) -> None:
    assert _graph_io(load_verified(find_model(role))) == _contract_io(role)


def test_tampered_weights_are_refused(exported: tuple[dict, Path], tmp_path: Path) -> None:
    _, d = exported
    src = find_model("animator", d)
    bad = tmp_path / src.name
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        load_verified(bad)
    renamed = tmp_path / "animator.onnx"
    shutil.copy(src, renamed)
    with pytest.raises(ModelError):
        load_verified(renamed)


def test_missing_or_ambiguous_weights(exported: tuple[dict, Path], tmp_path: Path) -> None:
    _, d = exported
    assert weights_available(d)
    assert not weights_available(tmp_path)
    with pytest.raises(ModelError):
        find_model("animator", tmp_path)
    for p in d.glob("*.onnx"):
        shutil.copy(p, tmp_path / p.name)
    fake = tmp_path / "animator-000000000000.onnx"
    fake.write_bytes(b"x")
    with pytest.raises(ModelError):
        find_model("animator", tmp_path)


def _stream(n_lowres: int, seed: int = 0) -> tuple[IdentityFrame, list, list]:
    rng = np.random.default_rng(seed)
    ident = IdentityFrame(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    lows = [LowResFrame(rng.uniform(0, 255, (8, 8, 3)).astype(np.float32), 200 * i)
            for i in range(n_lowres)]
    audio = [AudioChunk((0.1 * rng.standard_normal(320)).astype(np.float32), 20 * i)
             for i in range(n_lowres * 10)]
    return ident, lows, audio


def test_receiver_yields_frames_that_match_the_lowres_stream(
        exported: tuple[dict, Path]) -> None:
    from codec.receiver.neural import NeuralReceiver
    from codec.sender.downsample import box_downsample

    _, d = exported
    rx = NeuralReceiver(models_dir=d, threads=1)
    ident, lows, audio = _stream(4)
    frames = rx.run(ident, lows, audio)
    times = [f.timestamp_ms for f in frames]
    assert times[:6] == [0, 40, 80, 120, 160, 200]
    assert times == sorted(set(times)) and times[-1] >= 600
    for f in frames:
        assert f.image.shape == (256, 256, 3) and f.image.dtype == np.uint8
    # Back-projection: at a key frame time the output's 8x8 box means follow that frame.
    key = frames[5].image
    err = np.abs(box_downsample(key, 32) - lows[1].pixels).mean()
    ref = np.abs(box_downsample(ident.image, 32) - lows[1].pixels).mean()
    assert err < 0.5 * ref


@needs_shipped
def test_shipped_receiver_runs_from_the_registry() -> None:
    from codec.receiver.registry import get_receiver

    rx = get_receiver("neural")
    ident, lows, audio = _stream(3, seed=1)
    frames = rx.run(ident, lows, audio)
    assert len(frames) >= 10
    assert all(f.image.shape == (256, 256, 3) for f in frames)
    stds = [float(f.image.std()) for f in frames]
    assert min(stds) > 1.0  # not a blank frame


@needs_shipped
def test_device_choice_is_checked() -> None:
    import onnxruntime as ort

    from codec.receiver.neural import NeuralReceiver

    assert NeuralReceiver(device="cpu").providers == ["CPUExecutionProvider"]
    from codec.errors import ConfigError

    with pytest.raises(ConfigError, match="must be one of"):
        NeuralReceiver(device="tpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ConfigError, match="no CUDA provider"):
            NeuralReceiver(device="cuda")


def test_receiver_imports_without_pyav() -> None:
    """A receiver container or GPU box needs no PyAV to run the neural receiver."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['av'] = None\n"
            "from codec.receiver.neural import NeuralReceiver\n"
            "from codec.receiver.neural.mouth import MouthWarp\n")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)


def test_receiver_runs_without_torch() -> None:
    """The torch networks live in training/: the installed receiver imports no torch."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import codec.receiver.neural.contract, codec.receiver.neural.compose\n"
            "from codec.receiver.neural import NeuralReceiver\n"
            "import codec.receiver.registry, codec.metrics.sync\n")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)
    package = root / "codec" / "receiver"
    assert not [p for p in package.rglob("*.py") if "import torch" in p.read_text()]


def test_models_dir_is_the_repo_models_folder() -> None:
    assert weights.models_dir().name == "models"
    assert (weights.models_dir().parent / "codec").is_dir()


def test_back_projection_makes_the_output_agree_with_the_lowres_frame() -> None:
    import torch.nn.functional as F

    from training.networks.animator import back_project

    g = torch.Generator().manual_seed(0)
    out = torch.rand(2, 3, 256, 256, generator=g) * 255
    low = torch.rand(2, 3, 8, 8, generator=g) * 255
    fixed = back_project(out, low)
    assert float((F.avg_pool2d(fixed, 32) - low).abs().max()) < 1e-2
    assert float((F.avg_pool2d(out, 32) - low).abs().max()) > 10.0


def test_numpy_compose_matches_the_torch_animator() -> None:
    """The runtime's warp/blend/back-projection (numpy/OpenCV) equals Animator.compose."""
    import torch.nn.functional as F

    from codec.receiver.neural.compose import compose_frame
    from training.networks.animator import Animator

    torch.manual_seed(1)
    anim = Animator()
    with torch.no_grad():
        for p in anim.parameters():
            p.add_(0.05 * torch.randn_like(p))  # large motion, mask and colour
        ident = F.interpolate(torch.rand(1, 3, 32, 32) * 255, size=(256, 256), mode="bilinear")
        win = torch.rand(1, 5, 3, 8, 8) * 255
        feats = (torch.rand(1, 3, 8, 8) * 255, torch.randn(1, 24, 32, 32),
                 torch.randn(1, 48, 16, 16), torch.randn(1, 20, 40))
        ref = anim(win, *feats, ident)[0].permute(1, 2, 0).numpy()
        theta, flow, mask, colour = anim.heads(win, *feats)
    assert float(theta.abs().max()) > 0.05
    out = compose_frame(ident[0].permute(1, 2, 0).numpy().copy(), theta[0].numpy(),
                        flow[0].numpy(), mask[0].numpy(), colour[0].numpy(),
                        win[0, 2].permute(1, 2, 0).numpy())
    assert float(np.abs(out - ref).max()) < 0.05
    # compose_frame's back-projection with a soft threshold: the residual it adds has the
    # block means of the thresholded residual (as back_project's; tests/test_receivers.py).
    from codec.receiver.neural.compose import _backproject_residual

    rng = np.random.default_rng(0)
    img = rng.uniform(60, 200, (256, 256, 3)).astype(np.float32)
    r = rng.uniform(-8, 8, (8, 8, 3)).astype(np.float32)
    low = img.reshape(8, 32, 8, 32, 3).mean(axis=(1, 3)) + r
    added = _backproject_residual(img, low, 3.0).reshape(8, 32, 8, 32, 3).mean(axis=(1, 3))
    want = np.sign(r) * np.maximum(np.abs(r) - 3.0, 0.0)
    assert (np.abs(r) <= 3.0).any() and float(np.abs(added - want).max()) < 1e-2
    plain = _backproject_residual(img, low).reshape(8, 32, 8, 32, 3).mean(axis=(1, 3))
    assert float(np.abs(plain - r).max()) < 1e-2
