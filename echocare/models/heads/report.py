"""Report generation (seed 003 §4.5.7): encoder image tokens → a small transformer text decoder.

The backbone's deepest feature map of each image (1..N images per report; USData: two) becomes a
sequence of visual tokens: a linear projection to the decoder width plus a fixed 2-D sine-cosine
position and a learned image-slot embedding, concatenated over the N images. A
``torch.nn.TransformerDecoder`` (pre-norm, causal self-attention, cross-attention to the visual
tokens, output projection tied to the token embedding — applied functionally, so the state dict holds the
weight once and saves to safetensors) is trained with teacher forcing; inference is
greedy or beam search (length-normalised). The forward pass is the image side only, so the head
fits the shared head contract: ``forward(features, image)`` gives the visual ``memory``,
``loss(outputs, {"tokens"})`` runs the decoder with teacher forcing, ``predict(outputs)`` decodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from echocare.models.heads.common import parse_feature_info, require_keys


def sincos_2d(h: int, w: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions (h*w, dim), rows then columns (dim divisible by 4)."""
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4, got {dim}")
    q = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(q, device=device, dtype=torch.float32) / q))  # (q,)
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    y = ys.reshape(-1, 1) * freq  # (h*w, q)
    x = xs.reshape(-1, 1) * freq
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1)  # (h*w, dim)


class ReportHead(nn.Module):
    """Visual tokens + transformer decoder for free-text reports.

    Args:
        feature_info: backbone feature description (the deepest level is used).
        vocab_size: tokenizer vocabulary size.
        d_model: decoder width (divisible by 4 and by ``num_heads``).
        num_heads: attention heads.
        num_layers: decoder layers.
        dim_feedforward: MLP width (default 4 * d_model).
        dropout: dropout in the decoder.
        max_len: longest token sequence (incl. BOS/EOS) the decoder can see or generate.
        max_images: image slots per report.
        pad_id: padding id (ignored by the loss), ``bos_id`` / ``eos_id``: sequence delimiters.
        label_smoothing: cross-entropy label smoothing.

    Forward: ``image`` (B, N, C, H, W) (or (B, C, H, W) = one image) with the features of its
    B*N images → ``{"memory": (B, N*h*w, d_model)}``. Targets: ``{"tokens": (B, L) long}``
    ``[BOS] ... [EOS] [PAD]...``.
    """

    task = "report_generation"

    def __init__(
        self,
        feature_info: Any,
        vocab_size: int,
        d_model: int = 256,
        num_heads: int = 4,
        num_layers: int = 3,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        max_len: int = 64,
        max_images: int = 2,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        label_smoothing: float = 0.0,
        num_levels: int = 1,
        global_token: bool = True,
    ) -> None:
        super().__init__()
        if vocab_size < 4:
            raise ValueError(f"vocab_size must be >= 4 (PAD, BOS, EOS, UNK), got {vocab_size}")
        self.spec = parse_feature_info(feature_info)
        self.vocab_size, self.d_model, self.max_len, self.max_images = vocab_size, d_model, max_len, max_images
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.label_smoothing = label_smoothing
        if not 1 <= num_levels <= len(self.spec):
            raise ValueError(f"num_levels must be in [1, {len(self.spec)}], got {num_levels}")
        self.visual = nn.ModuleList(nn.Sequential(nn.Linear(c, d_model), nn.LayerNorm(d_model))
                                    for c in self.spec.channels[-num_levels:])
        self.global_token = global_token
        self.level_global = nn.Parameter(torch.zeros(d_model))
        self.slot = nn.Embedding(max_images, d_model)
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerDecoderLayer(d_model, num_heads, dim_feedforward or 4 * d_model, dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Visual memory (B, N*h*w, d_model) of the report's images."""
        if image.ndim == 4:
            b, n = image.shape[0], 1
        elif image.ndim == 5:
            b, n = image.shape[:2]
        else:
            raise ValueError(f"report images should be (B, N, C, H, W) or (B, C, H, W), got {tuple(image.shape)}")
        if n > self.max_images:
            raise ValueError(f"{n} images per report > max_images={self.max_images}")
        parts = []
        for proj, feat in zip(self.visual, features[-len(self.visual):]):  # deepest levels, (B*N, C_i, h_i, w_i)
            if feat.shape[0] != b * n:
                raise ValueError(f"features hold {feat.shape[0]} images, expected B*N = {b * n}")
            h, w = feat.shape[-2:]
            tok = proj(feat.flatten(2).transpose(1, 2))  # (B*N, h*w, D)
            tok = tok + sincos_2d(h, w, self.d_model, feat.device).to(tok.dtype)
            parts.append(tok)
        tokens = torch.cat(parts, dim=1)  # (B*N, T, D)
        if self.global_token:
            tokens = torch.cat([tokens.mean(dim=1, keepdim=True) + self.level_global, tokens], dim=1)  # (B*N, 1+T, D)
        t = tokens.shape[1]
        tokens = tokens.reshape(b, n, t, self.d_model) + self.slot.weight[:n, None, :]  # (B, N, T', D)
        return {"memory": tokens.reshape(b, n * t, self.d_model)}

    def logits(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, L, V) for input ids (B, L).

        Causal self-attention only: padding follows EOS, so no real token ever attends to it.
        """
        length = tokens.shape[1]
        if length > self.max_len:
            raise ValueError(f"token sequence of {length} > max_len={self.max_len}")
        pos = torch.arange(length, device=tokens.device)
        x = self.embed(tokens) * math.sqrt(self.d_model) + self.pos(pos)  # (B, L, D)
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device, dtype=x.dtype)
        x = self.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True)
        return F.linear(x, self.embed.weight)  # (B, L, V); output projection tied to the embedding

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, Any]:
        """Teacher-forced cross-entropy of ``tokens[:, 1:]`` given ``tokens[:, :-1]``; logs token accuracy."""
        require_keys(targets, ["tokens"], "report_generation")
        tokens = targets["tokens"].long().to(outputs["memory"].device)
        if tokens.ndim != 2 or tokens.shape[0] != outputs["memory"].shape[0] or tokens.shape[1] < 2:
            raise ValueError(f"tokens should be (B, L>=2) with B={outputs['memory'].shape[0]}, "
                             f"got {tuple(tokens.shape)}")
        logits = self.logits(outputs["memory"], tokens[:, :-1])  # (B, L-1, V)
        target = tokens[:, 1:]
        loss = F.cross_entropy(logits.float().reshape(-1, self.vocab_size), target.reshape(-1),
                               ignore_index=self.pad_id, label_smoothing=self.label_smoothing)
        keep = target != self.pad_id
        acc = (logits.argmax(-1) == target)[keep].float().mean() if keep.any() else logits.new_zeros(())
        return {"loss": loss, "logs": {"token_acc": acc.detach()}}

    @torch.no_grad()
    def generate(self, memory: torch.Tensor, beam_size: int = 1, max_len: int | None = None,
                 length_penalty: float = 0.6) -> list[list[int]]:
        """Decode token ids (without BOS/EOS) per report: greedy (``beam_size=1``) or beam search.

        Beam hypotheses are ranked by total log-probability / length**``length_penalty``; those that
        ended with EOS are preferred over those cut at ``max_len``.
        """
        max_len = min(max_len or self.max_len, self.max_len)
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if beam_size == 1:
            return self._greedy(memory, max_len)
        return [self._beam(memory[i : i + 1], beam_size, max_len, length_penalty) for i in range(memory.shape[0])]

    def _greedy(self, memory: torch.Tensor, max_len: int) -> list[list[int]]:
        b = memory.shape[0]
        seq = torch.full((b, 1), self.bos_id, dtype=torch.long, device=memory.device)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        while seq.shape[1] < max_len and not bool(done.all()):
            nxt = self.logits(memory, seq)[:, -1].argmax(-1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            done |= nxt == self.eos_id
        return [self._strip(s) for s in seq.tolist()]

    def _beam(self, memory: torch.Tensor, k: int, max_len: int, alpha: float) -> list[int]:
        dev = memory.device
        seq = torch.full((k, 1), self.bos_id, dtype=torch.long, device=dev)
        scores = torch.full((k,), float("-inf"), device=dev)
        scores[0] = 0.0  # all beams start identical: expand only one
        done = torch.zeros(k, dtype=torch.bool, device=dev)
        mem = memory.expand(k, -1, -1)
        while seq.shape[1] < max_len and not bool(done.all()):
            logp = self.logits(mem, seq)[:, -1].float().log_softmax(-1)  # (k, V)
            frozen = torch.full_like(logp, float("-inf"))
            frozen[:, self.pad_id] = 0.0  # a finished beam only extends with PAD at no cost
            logp = torch.where(done[:, None], frozen, logp)
            top, idx = (scores[:, None] + logp).reshape(-1).topk(k)  # (k,)
            beam, tok = idx // self.vocab_size, idx % self.vocab_size
            seq = torch.cat([seq[beam], tok[:, None]], dim=1)
            scores, done = top, done[beam] | (tok == self.eos_id)
        lengths = torch.tensor([len(self._strip(s)) + 1 for s in seq.tolist()], device=dev, dtype=torch.float32)
        ranked = scores / lengths.pow(alpha)
        if bool(done.any()):  # hypotheses cut at max_len compete only when none ended with EOS
            ranked = ranked.masked_fill(~done, float("-inf"))
        best = int(ranked.argmax())
        return self._strip(seq[best].tolist())

    def _strip(self, ids: list[int]) -> list[int]:
        out = []
        for i in ids[1:]:
            if i in (self.eos_id, self.pad_id):
                break
            out.append(i)
        return out

    @torch.no_grad()
    def predict(self, outputs: Mapping[str, torch.Tensor], beam_size: int = 1) -> dict[str, Any]:
        """Generated token ids per report (``{"tokens": list[list[int]]}``); decode with the tokenizer."""
        return {"tokens": self.generate(outputs["memory"], beam_size=beam_size)}
