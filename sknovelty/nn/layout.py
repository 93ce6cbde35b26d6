"""Memory layout of convolution inputs on the CPU."""

import math

import torch


def plain_strides(shape):
    """Element strides of a C-ordered array of ``shape`` (size-1 axes included)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def channels_last(x):
    """``x`` (n, C, H, W) in channels-last order, where oneDNN's CPU convolutions are fastest.

    Single-channel inputs keep (or get) plain NCHW strides instead: a tensor of one channel
    whose strides also read as channels-last (``x.to(memory_format=torch.channels_last)``,
    or ``torch.from_numpy(frames[:, None])``) sends oneDNN's multithreaded 1x1 convolution
    backward pass into a hang or a heap corruption on x86 CPUs (see the user guide, "A CPU
    defect the library works around"; ``benchmarks/upstream_onednn_c1_conv.py`` reproduces it).
    """
    if x.shape[1] > 1:
        return x.contiguous(memory_format=torch.channels_last)
    if math.prod(x.shape) and x.stride() != plain_strides(x.shape):
        return x.clone(memory_format=torch.contiguous_format)
    return x
