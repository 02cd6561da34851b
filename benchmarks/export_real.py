#!/usr/bin/env python3
"""Export real-architecture models to ONNX for the latency benchmark.

    /work/venv-torch/bin/python benchmarks/export_real.py [--out benchmarks/real] [--only NAME,...] [--list]

Needs its own virtualenv (benchmarks/requirements-real.txt: torch, torchvision,
timm, segmentation-models-pytorch), kept out of CI.  No weights are
downloaded: every model is built with random, seeded initialisation
(`weights=None`, `pretrained=False`, `encoder_weights=None`), and every
BatchNorm gets random, non-trivial statistics and affine parameters, so the
exporter's BatchNorm folding is exercised and activations stay in range.

Each model is exported with `torch.onnx.export(dynamo=False)` at opset 17,
checked with `onnx.checker.check_model(full_check=True)` and run in
onnxruntime against torch on the same seeded input (max |diff| relative to
max |torch output| must be <= 1e-3).  The script is deterministic: the same
package versions give the same files.  The folder is git-ignored; never
commit the .onnx files.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from torch import nn

OPSET = 17
TOLERANCE = 1e-3
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "real")


# --- helpers ---------------------------------------------------------------------------------

def randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Random running statistics and affine parameters for every BatchNorm."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))


class FirstOutput(nn.Module):
    """Wraps a model whose forward returns a dict ("out") or a list (last feature)."""

    def __init__(self, model: nn.Module, key=None):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        y = self.model(x)
        if isinstance(y, dict):
            return y[self.key or "out"]
        if isinstance(y, (list, tuple)):
            return y[-1] if self.key is None else y[self.key]
        return y


# --- inline architectures --------------------------------------------------------------------

class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2015): latent 1x1 -> 64x64 image through
    ConvTranspose 4x4 stride 2 + BatchNorm + ReLU, Tanh at the end."""

    def __init__(self, nz: int = 100, ngf: int = 64):
        super().__init__()
        chans = [nz, ngf * 8, ngf * 4, ngf * 2, ngf]
        layers = [nn.ConvTranspose2d(nz, chans[1], 4, 1, 0, bias=False), nn.BatchNorm2d(chans[1]), nn.ReLU()]
        for cin, cout in zip(chans[1:-1], chans[2:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        layers += [nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class Pix2PixUNet(nn.Module):
    """pix2pix U-Net generator (Isola et al. 2017), `depth` levels: Conv 4x4
    stride 2 down, ConvTranspose 4x4 stride 2 up, skip concatenations."""

    def __init__(self, ngf: int = 32, depth: int = 6):
        super().__init__()
        chans = [min(ngf * 2 ** i, ngf * 8) for i in range(depth)]
        self.down = nn.ModuleList()
        cin = 3
        for i, c in enumerate(chans):
            norm = [] if i == 0 else [nn.BatchNorm2d(c)]
            self.down.append(nn.Sequential(nn.Conv2d(cin, c, 4, 2, 1, bias=False), *norm, nn.LeakyReLU(0.2)))
            cin = c
        self.up = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            cin_up = chans[i + 1] if i == depth - 2 else chans[i + 1] * 2
            self.up.append(nn.Sequential(nn.ConvTranspose2d(cin_up, chans[i], 4, 2, 1, bias=False),
                                         nn.BatchNorm2d(chans[i]), nn.ReLU()))
        self.last = nn.ConvTranspose2d(chans[0] * 2, 3, 4, 2, 1)

    def forward(self, x):
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
        for up, skip in zip(self.up, reversed(skips[:-1])):
            x = torch.cat([up(x), skip], 1)
        return torch.tanh(self.last(x))


class ResBlock1d(nn.Module):
    """HiFi-GAN ResBlock1: pairs of (dilated Conv1d, Conv1d), LeakyReLU, residual."""

    def __init__(self, ch: int, k: int, dilations=(1, 3, 5)):
        super().__init__()
        self.c1 = nn.ModuleList(nn.Conv1d(ch, ch, k, dilation=d, padding=d * (k - 1) // 2) for d in dilations)
        self.c2 = nn.ModuleList(nn.Conv1d(ch, ch, k, padding=(k - 1) // 2) for _ in dilations)

    def forward(self, x):
        for c1, c2 in zip(self.c1, self.c2):
            x = x + c2(nn.functional.leaky_relu(c1(nn.functional.leaky_relu(x, 0.1)), 0.1))
        return x


class HiFiGANGenerator(nn.Module):
    """HiFi-GAN V2-like generator (Kong et al. 2020): mel (80 bins) ->
    waveform, ConvTranspose1d upsampling 8x8x2x2 and multi-receptive-field
    fusion of dilated residual blocks (kernels 3, 7, 11; dilations 1, 3, 5)."""

    def __init__(self, mels: int = 80, ch: int = 128, rates=(8, 8, 2, 2), kernels=(16, 16, 4, 4),
                 res_kernels=(3, 7, 11)):
        super().__init__()
        self.pre = nn.Conv1d(mels, ch, 7, padding=3)
        self.ups, self.res = nn.ModuleList(), nn.ModuleList()
        for i, (u, k) in enumerate(zip(rates, kernels)):
            cin, cout = ch // 2 ** i, ch // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(cin, cout, k, u, padding=(k - u) // 2))
            self.res.append(nn.ModuleList(ResBlock1d(cout, rk) for rk in res_kernels))
        self.post = nn.Conv1d(ch // 2 ** len(rates), 1, 7, padding=3)

    def forward(self, x):
        x = self.pre(x)
        for up, blocks in zip(self.ups, self.res):
            x = up(nn.functional.leaky_relu(x, 0.1))
            x = sum(b(x) for b in blocks) / len(blocks)
        return torch.tanh(self.post(nn.functional.leaky_relu(x)))


# --- model registry --------------------------------------------------------------------------

def tv_seg(name: str):
    import torchvision.models.segmentation as seg
    kwargs = {"weights": None, "weights_backbone": None}
    if name != "lraspp_mobilenet_v3_large":
        kwargs["aux_loss"] = False
    return FirstOutput(getattr(seg, name)(**kwargs))


def maskrcnn_mask_head():
    """Mask R-CNN's mask branch on 14x14 RoI features: four 3x3 Convs
    (MaskRCNNHeads) and the predictor (ConvTranspose 2x2 stride 2 + 1x1 Conv)."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    m = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    return nn.Sequential(m.roi_heads.mask_head, m.roi_heads.mask_predictor)


def timm_os8(name: str):
    import timm
    return FirstOutput(timm.create_model(name, pretrained=False, output_stride=8, features_only=True))


def smp_model(arch: str, encoder: str, **kw):
    import segmentation_models_pytorch as smp
    return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=21, **kw)


# name -> (builder, input shape); one inference on 1 CPU thread is roughly 5-400 ms
MODELS = {
    "tv_deeplabv3_mobilenet_v3_large": (lambda: tv_seg("deeplabv3_mobilenet_v3_large"), (1, 3, 512, 512)),
    "tv_fcn_resnet50": (lambda: tv_seg("fcn_resnet50"), (1, 3, 128, 128)),
    "tv_lraspp_mobilenet_v3_large": (lambda: tv_seg("lraspp_mobilenet_v3_large"), (1, 3, 512, 512)),
    "tv_maskrcnn_mask_head": (maskrcnn_mask_head, (1, 256, 14, 14)),
    "timm_resnet18_os8": (lambda: timm_os8("resnet18"), (1, 3, 256, 256)),
    "timm_mobilenetv3_large_os8": (lambda: timm_os8("mobilenetv3_large_100"), (1, 3, 256, 256)),
    "smp_unet_resnet18": (lambda: smp_model("Unet", "resnet18"), (1, 3, 256, 256)),
    "smp_fpn_resnet18": (lambda: smp_model("FPN", "resnet18"), (1, 3, 256, 256)),
    "smp_deeplabv3plus_resnet18": (lambda: smp_model("DeepLabV3Plus", "resnet18"), (1, 3, 256, 256)),
    "smp_pspnet_resnet18": (lambda: smp_model("PSPNet", "resnet18"), (1, 3, 384, 384)),  # pooling bins 1,2,3,6
    "smp_upernet_resnet18": (lambda: smp_model("UPerNet", "resnet18"), (1, 3, 192, 192)),  # 6x6 at 1/32
    "smp_unet_mobilenet_v2": (lambda: smp_model("Unet", "mobilenet_v2"), (1, 3, 256, 256)),
    "gan_dcgan_generator": (DCGANGenerator, (1, 100, 1, 1)),
    "gan_pix2pix_unet": (Pix2PixUNet, (1, 3, 256, 256)),
    "vocoder_hifigan_v2": (HiFiGANGenerator, (1, 80, 64)),
}


# --- export and check ------------------------------------------------------------------------

def build(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = MODELS[name][0]()
    randomize_batchnorm(model, seed)
    return model.eval()


def export_one(name: str, out_dir: str, seed: int) -> str:
    """Export, check and compare one model; returns a one-line summary."""
    import onnx
    import onnxruntime as ort

    model = build(name, seed)
    shape = MODELS[name][1]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = model(x).numpy()
    path = os.path.join(out_dir, name + ".onnx")
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=OPSET,
                      input_names=["input"], output_names=["output"], do_constant_folding=True)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    rel = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))
    if got.shape != want.shape or not rel <= TOLERANCE:
        raise RuntimeError(f"{name}: onnxruntime differs from torch: shape {got.shape} vs {want.shape}, rel {rel:.3g}")
    return f"{name}: input {shape} -> output {tuple(want.shape)}, rel err {rel:.2g}, {os.path.getsize(path) / 1e6:.1f} MB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default benchmarks/real)")
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--list", action="store_true", help="print the model names and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(MODELS))
        return 0
    names = [n for n in args.only.split(",") if n] or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model {unknown[0]!r}; see --list")
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    failed = 0
    for name in names:
        t0 = time.perf_counter()
        try:
            print(export_one(name, args.out, args.seed), f"({time.perf_counter() - t0:.1f} s)", flush=True)
        except Exception as e:  # report and go on: one broken architecture should not stop the others
            failed += 1
            print(f"{name}: FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
