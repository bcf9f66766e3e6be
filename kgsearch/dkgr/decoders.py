"""Prediction module: score all candidates from a pair of query embeddings (paper Sec. 4.3).

Every decoder maps (a [B, d], b [B, d]) to a query vector [B, d] and scores it against a candidate
matrix [C, d] by dot product (softmax cross-entropy on top, Eq. 15-16):

* entity prediction:   (a, b) = (e_s, r)  against the entity matrix   (Eq. 1)
* relation prediction: (a, b) = (e_s, e_o) against the relation matrix (Eq. 2)

`ConvTransE` (default; Shang et al. 2019, as in RE-GCN): the two vectors are two channels of a 1-D
convolution, which keeps the translational alignment of their coordinates. `ConvE` (Dettmers et al.
2018): both reshaped to 2-D images stacked on top of each other and convolved in 2-D (padding 1 so
any d works). `FCDecoder` is the paper's -ConvE ablation: one fully-connected layer on [a ; b].
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from kgsearch.dkgr.cpu_ops import ByteDropout, bucketed_matmul, row_bucket


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """layer(x) with the batch padded to a bucket size (bounded kernel count under bf16, cpu_ops)."""
    return bucketed_matmul(x, layer.weight, layer.bias, transpose=True)


def _bn(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # BatchNorm cannot estimate statistics from one training example; skip it then (as RE-GCN does).
    return x if (bn.training and x.shape[0] < 2) else bn(x)


class ConvTransE(nn.Module):
    """Conv1d(2 -> C, kernel k, same padding) over the stacked pair, fc to d, dot with candidates.

    The convolution is computed as one matmul over the sliding windows ([B*d, 2k] x [2k, C]): the
    same operation as nn.Conv1d, but its backward is ~2x cheaper on CPU in bf16 (measured). The feature
    map is laid out [B, d, C] instead of [B, C, d]; BatchNorm over channels sees the same statistics
    and the fc that follows simply learns permuted weights.

    In training, BatchNorm after the convolution is folded into it (`_conv_bn_train`): the batch mean
    and variance of a linear map of the windows follow from the windows' [2k] mean and [2k, 2k]
    covariance, so BN costs a pass over [B*d, 2k] instead of several over the [B*d, C] feature map
    (on ICEWS18 ~46M values per step and decoder). Same function, gradients through the batch
    statistics included, same running-statistics update; evaluation uses the plain BN.
    """

    def __init__(self, dim: int, channels: int = 50, kernel_size: int = 3, input_dropout: float = 0.2,
                 hidden_dropout: float = 0.2, feature_dropout: float = 0.2):
        super().__init__()
        self.kernel_size = kernel_size
        self.bn0 = nn.BatchNorm1d(2)
        self.conv_weight = nn.Parameter(torch.empty(2 * kernel_size, channels))   # (in, tap) x out
        self.conv_bias = nn.Parameter(torch.zeros(channels))
        bound = 1.0 / math.sqrt(2 * kernel_size)       # nn.Conv1d's default init range
        nn.init.uniform_(self.conv_weight, -bound, bound)
        nn.init.uniform_(self.conv_bias, -bound, bound)
        self.bn1 = nn.BatchNorm1d(channels)
        self.fc = nn.Linear(channels * dim, dim)
        self.bn2 = nn.BatchNorm1d(dim)
        self.input_drop = ByteDropout(input_dropout)
        self.feature_drop = ByteDropout(feature_dropout)
        self.hidden_drop = ByteDropout(hidden_dropout)

    def query(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        batch, dim = a.shape
        x = self.input_drop(_bn(self.bn0, torch.stack([a, b], dim=1)))          # [B, 2, d]
        pad = self.kernel_size // 2
        windows = F.pad(x, (pad, pad)).unfold(2, self.kernel_size, 1)           # [B, 2, d, k]
        windows = windows.permute(0, 2, 1, 3).reshape(batch * dim, -1)          # [B*d, 2k]
        if self.training:
            feats = F.relu(self._conv_bn_train(windows), inplace=True)             # [B*d, C]
        else:
            feats = F.relu(self.bn1(bucketed_matmul(windows, self.conv_weight, self.conv_bias)))
        feats = self.feature_drop(feats)
        x = self.hidden_drop(_linear(self.fc, feats.reshape(batch, -1)))
        return F.relu(_bn(self.bn2, x))

    def _conv_bn_train(self, windows: torch.Tensor) -> torch.Tensor:
        """bn1(windows @ W + bias) in training mode, as one matmul with BN folded into W and bias."""
        bn, n = self.bn1, windows.shape[0]
        with torch.autocast(windows.device.type, enabled=False):
            w = windows.float()
            mean_w = w.mean(0)
            centred = w - mean_w
            cov = centred.t() @ centred / n                                     # [2k, 2k], biased
            mean_y = mean_w @ self.conv_weight + self.conv_bias                 # [C]
            var_y = ((cov @ self.conv_weight) * self.conv_weight).sum(0)        # diag(W^T cov W)
            scale = bn.weight * torch.rsqrt(var_y + bn.eps)
            weight = self.conv_weight * scale
            bias = (self.conv_bias - mean_y) * scale + bn.bias                   # conv bias cancels, as in BN
            if bn.track_running_stats:   # what nn.BatchNorm1d does in training (momentum, unbiased var)
                with torch.no_grad():
                    bn.num_batches_tracked += 1
                    m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                    bn.running_mean.lerp_(mean_y.detach(), m)
                    bn.running_var.lerp_(var_y.detach() * (n / max(n - 1, 1)), m)
        return bucketed_matmul(windows, weight, bias)

    def forward(self, a: torch.Tensor, b: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return bucketed_matmul(self.query(a, b), candidates, transpose=True)


def _image_shape(dim: int) -> tuple[int, int]:
    """(h, w) with h * w = dim and h the largest divisor <= sqrt(dim): 200 -> (10, 20)."""
    h = max(k for k in range(1, math.isqrt(dim) + 1) if dim % k == 0)
    return h, dim // h


class ConvE(nn.Module):
    def __init__(self, dim: int, channels: int = 32, kernel_size: int = 3, input_dropout: float = 0.2,
                 hidden_dropout: float = 0.2, feature_dropout: float = 0.2):
        super().__init__()
        self.h, self.w = _image_shape(dim)
        self.bn0 = nn.BatchNorm2d(1)
        self.conv = nn.Conv2d(1, channels, kernel_size, padding=kernel_size // 2)
        self.bn1 = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels * 2 * self.h * self.w, dim)
        self.bn2 = nn.BatchNorm1d(dim)
        self.input_drop = ByteDropout(input_dropout)
        self.feature_drop = ByteDropout(feature_dropout)   # element-wise (ConvE used channel dropout)
        self.hidden_drop = ByteDropout(hidden_dropout)

    def query(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        img = torch.cat([a.view(-1, 1, self.h, self.w), b.view(-1, 1, self.h, self.w)], dim=2)
        x = self.input_drop(_bn(self.bn0, img))                            # [B, 1, 2h, w]
        n = x.shape[0]   # conv on a bucketed batch (see cpu_ops): the padding never reaches a BatchNorm
        x = self.conv(F.pad(x, (0, 0, 0, 0, 0, 0, 0, row_bucket(n) - n)))[:n]
        x = self.feature_drop(F.relu(_bn(self.bn1, x)))
        x = self.hidden_drop(_linear(self.fc, x.flatten(1)))
        return F.relu(_bn(self.bn2, x))

    def forward(self, a: torch.Tensor, b: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return bucketed_matmul(self.query(a, b), candidates, transpose=True)


class FCDecoder(nn.Module):
    """-ConvE ablation: query = W [a ; b] + bias, one fully-connected layer."""

    def __init__(self, dim: int, input_dropout: float = 0.2):
        super().__init__()
        self.fc = nn.Linear(2 * dim, dim)
        self.input_drop = ByteDropout(input_dropout)

    def forward(self, a: torch.Tensor, b: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        query = _linear(self.fc, self.input_drop(torch.cat([a, b], dim=1)))
        return bucketed_matmul(query, candidates, transpose=True)


def make_decoder(kind: str, dim: int, channels: int, kernel_size: int, input_dropout: float,
                 hidden_dropout: float, feature_dropout: float) -> nn.Module:
    if kind == "convtranse":
        return ConvTransE(dim, channels, kernel_size, input_dropout, hidden_dropout, feature_dropout)
    if kind == "conve":
        return ConvE(dim, 32, kernel_size, input_dropout, hidden_dropout, feature_dropout)
    if kind == "fc":
        return FCDecoder(dim, input_dropout)
    raise ValueError(f"unknown decoder {kind!r} (convtranse, conve, fc)")
