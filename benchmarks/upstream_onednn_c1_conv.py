"""Pure-PyTorch reproducer of the oneDNN defect behind the "fit kills the process" issue.

oneDNN's 1x1 stride-2 convolutions (forward and transposed) on CPU, in channels-last memory
layout, compute wrong and non-deterministic results and can corrupt the heap: the process
then hangs, segfaults or aborts in glibc ("corrupted size vs. prev_size", "double free").
A single-channel tensor whose strides also read as channels-last (``torch.from_numpy(
frames[:, None])``, ``x.to(memory_format=torch.channels_last)``) sends a whole network down
that path; with more channels, small spatial sizes (2x2 to 8x8) show it.

Each case runs in its own subprocess with a time limit, so a crash or a hang is reported
instead of taking this script down::

    python benchmarks/upstream_onednn_c1_conv.py

Seen failing (2026-11-27), torch 2.13.0+cpu:
- AMD EPYC, AVX2 only (no AVX-512), 2 threads: the C=1 case hangs; the transposed case gives
  different results in 15 of 29 identical repeats. With ``OMP_NUM_THREADS=1`` both abort in
  glibc ("free(): invalid size", "corrupted double-linked list").
- AMD EPYC with AVX-512 + bf16 (reported in the issue): segfaults and glibc aborts in
  oneDNN's ``brg_conv_bwd:avx512_core``, 2 threads.
The stride-1 control never differs. sknovelty avoids the path: ``sknovelty.nn.blocks`` (the
stride-2 shortcuts), ``sknovelty.nn.layout`` and ``sknovelty._device.c_ordered`` (inputs).
"""

import platform
import subprocess
import sys

import torch

SINGLE_CHANNEL = """
import torch
conv = torch.nn.Conv2d(1, 32, 1, stride=2, bias=False)
for epoch in range(30):
    for n in (64, 64, 22):
        x = torch.empty_strided((n, 1, 32, 32), (1024, 1, 32, 1)).copy_(torch.rand(n, 1, 32, 32))
        conv(x).sum().backward()
print("completed")
"""

REPEATED = """
import torch
from torch import nn
torch.manual_seed(0)
layer = {layer}
x0 = torch.rand({shape}).contiguous(memory_format=torch.channels_last)
results = []
for _ in range(30):
    x = x0.clone().requires_grad_(True)
    layer.zero_grad()
    y = layer(x)
    y.square().sum().backward()
    results.append(torch.cat([y.detach().flatten(), x.grad.flatten(), layer.weight.grad.flatten()]))
differ = sum(not torch.equal(results[0], r) for r in results[1:])
print(f"{{differ}} of 29 repeats differ from the first")
"""

CASES = {
    "C=1 input with channels-last strides, 1x1 stride-2 conv, backward": SINGLE_CHANNEL,
    "1x1 stride-2 conv, 4 -> 8 channels, 4x4, channels-last": REPEATED.format(
        layer="nn.Conv2d(4, 8, 1, stride=2, bias=False)", shape="(16, 4, 4, 4)"),
    "1x1 stride-2 transposed conv, 4 -> 2 channels, 4x4, channels-last": REPEATED.format(
        layer="nn.ConvTranspose2d(4, 2, 1, stride=2, output_padding=1, bias=False)",
        shape="(16, 4, 4, 4)"),
    "control: 1x1 stride-1 conv, 4 -> 8 channels, 4x4, channels-last": REPEATED.format(
        layer="nn.Conv2d(4, 8, 1, bias=False)", shape="(16, 4, 4, 4)"),
}


def main():
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, CPU ISA {torch.backends.cpu.get_cpu_capability()}")
    for name, code in CASES.items():
        try:
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 timeout=60)
            tail = (run.stdout + run.stderr).strip().splitlines()[-1:] or [""]
            outcome = f"exit code {run.returncode}: {tail[0]}"
        except subprocess.TimeoutExpired:
            outcome = "hung (killed after 60 s)"
        print(f"- {name}: {outcome}")


if __name__ == "__main__":
    main()
