"""The unit of work that is compiled: one Euler step of CFG flow matching over a padded batch.

`FlowStep` repeats DiT.forward's arithmetic (cfg_infer packing of the conditional and the
unconditional pass, the same dtype casts) but takes the text embeddings and rotary frequencies
as inputs, computed once per batch outside the step: no threading.local cache, no
data-dependent shapes, so torch.compile sees one static graph per (batch, width) bucket.

Padding is masked everywhere it could leak: the DiT's convolutions (audio_mask), and attention
(MaskedAttnProcessor: a (B, 1, 1, N) key mask broadcast over heads and queries, never expanded).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from f5_tts.model.modules import AttnProcessor
from x_transformers.x_transformers import apply_rotary_pos_emb


class MaskedAttnProcessor(AttnProcessor):
    """f5-tts's torch attention with padded keys masked out (f5-tts leaves them visible by default)."""

    def __init__(self, pe_attn_head: int | None = None) -> None:
        self.pe_attn_head, self.attn_backend, self.attn_mask_enabled = pe_attn_head, "torch", True

    def __call__(self, attn: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None,
                 rope: tuple[torch.Tensor, object] | None = None) -> torch.Tensor:
        batch = x.shape[0]
        query, key, value = (self._heads(attn, proj(x)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        if attn.q_norm is not None:
            query = attn.q_norm(query)
        if attn.k_norm is not None:
            key = attn.k_norm(key)
        if rope is not None:
            query, key = self._rotate(query, key, rope)
        keep = mask[:, None, None, :] if mask is not None else None
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=keep, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, query.shape[1] * query.shape[3]).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        return out.masked_fill(~mask.unsqueeze(-1), 0.0) if mask is not None else out

    @staticmethod
    def _heads(attn: torch.nn.Module, projected: torch.Tensor) -> torch.Tensor:
        batch, width, inner = projected.shape
        return projected.view(batch, width, attn.heads, inner // attn.heads).transpose(1, 2)

    def _rotate(self, query: torch.Tensor, key: torch.Tensor,
                rope: tuple[torch.Tensor, object]) -> tuple[torch.Tensor, torch.Tensor]:
        freqs, xpos_scale = rope
        q_scale, k_scale = (xpos_scale, xpos_scale**-1.0) if xpos_scale is not None else (1.0, 1.0)
        if self.pe_attn_head is None:
            return apply_rotary_pos_emb(query, freqs, q_scale), apply_rotary_pos_emb(key, freqs, k_scale)
        pn = self.pe_attn_head
        query[:, :pn], key[:, :pn] = (apply_rotary_pos_emb(query[:, :pn], freqs, q_scale),
                                      apply_rotary_pos_emb(key[:, :pn], freqs, k_scale))
        return query, key


def install_masked_attention(dit: torch.nn.Module) -> None:
    """Swap every DiT block's attention processor for the masked one (same weights, same math)."""
    for block in dit.transformer_blocks:
        block.attn.processor = MaskedAttnProcessor(block.attn.processor.pe_attn_head)


class FlowStep(torch.nn.Module):
    """x_next = x + dt · (v_cond + (v_cond − v_uncond) · cfg): one Euler step, both CFG passes packed."""

    def __init__(self, dit: torch.nn.Module, cfg_strength: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.dit, self.cfg_strength, self.dtype = dit, cfg_strength, dtype

    def forward(self, x: torch.Tensor, cond: torch.Tensor, text_cond: torch.Tensor, text_uncond: torch.Tensor,
                freqs: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        dit, batch = self.dit, x.shape[0]
        xd = x.to(self.dtype)
        time = dit.time_embed(t.to(self.dtype).repeat(batch))
        both = torch.cat((mask, mask), dim=0) if mask is not None else None
        # Both passes' input embeddings in one call (f5-tts makes two; drop_audio_cond = zeros for cond)
        hidden = dit.input_embed(torch.cat((xd, xd), dim=0), torch.cat((cond, torch.zeros_like(cond)), dim=0),
                                 torch.cat((text_cond, text_uncond), dim=0), drop_audio_cond=False, audio_mask=both)
        time = torch.cat((time, time), dim=0)
        for block in dit.transformer_blocks:
            hidden = block(hidden, time, mask=both, rope=(freqs, None))
        pred = dit.proj_out(dit.norm_out(hidden, time)).float()
        cond_pred, null_pred = torch.chunk(pred, 2, dim=0)
        return x + dt * (cond_pred + (cond_pred - null_pred) * self.cfg_strength)


def rotary_freqs(dit: torch.nn.Module, width: int) -> torch.Tensor:
    freqs, xpos_scale = dit.rotary_embed.forward_from_seq_len(width)
    if xpos_scale is not None and not (isinstance(xpos_scale, float) and xpos_scale == 1.0):
        raise ValueError("xpos rotary scaling is not supported")
    return freqs


def text_embeddings(dit: torch.nn.Module, text: torch.Tensor, lens: torch.Tensor | None,
                    width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional, unconditional) text embeddings, `width` frames.

    `lens` None: one unpadded item (DiT's own int seq_len path, bit-identical to f5-tts); else
    per-row valid frames, each row embedded as if it were alone (text_embedding_fixed).
    """
    if lens is None:
        pair = [dit.text_embed(text, seq_len=width, drop_text=drop) for drop in (False, True)]
        return tuple(F.pad(e, (0, 0, 0, width - e.shape[1])) for e in pair)  # type: ignore[return-value]
    tokens, valid = tokens_to_width(text, width), torch.arange(width, device=text.device)[None, :] < lens[:, None]
    return (text_embedding_fixed(dit.text_embed, tokens, valid, drop_text=False),
            text_embedding_fixed(dit.text_embed, tokens, valid, drop_text=True))


def tokens_to_width(tokens: torch.Tensor, width: int) -> torch.Tensor:
    """Text ids (rows, n) padded with -1 or cut to (rows, width), as f5-tts's text embedding does."""
    return F.pad(tokens, (0, max(0, width - tokens.shape[1])), value=-1)[:, :width]


def text_embedding_fixed(text_embed: torch.nn.Module, tokens: torch.Tensor, valid: torch.Tensor,
                         drop_text: bool) -> torch.Tensor:
    """f5-tts's TextEmbedding.forward for each row as if alone, at a fixed width, with no host sync.

    `tokens` (rows, width): ids padded with -1; `valid` (rows, width): frames inside each row. The
    same operations as f5-tts with seq_len = the row's length; frames past it come out zero. f5-tts's
    own batched path runs every row at the batch's longest length, and the ConvNeXt blocks' GRN
    (a norm over time) then sees the shorter rows' padding; here it sees only the row's own frames.
    Average upsampling (not used by F5TTS_v1_Base) is not supported.
    """
    if text_embed.average_upsampling:
        raise ValueError("text average upsampling is not supported")
    text = (tokens + 1).masked_fill(~valid, 0)
    filler = (text == 0).unsqueeze(-1)
    text = torch.zeros_like(text) if drop_text else text
    inside = valid.unsqueeze(-1)
    emb = text_embed.text_embed(text).masked_fill(~inside, 0.0)
    if not text_embed.extra_modeling:
        return emb
    freqs = text_embed.freqs_cis[: tokens.shape[1], :]
    emb = emb + freqs.unsqueeze(0) * inside.to(freqs.dtype)
    if not text_embed.mask_padding:
        raise ValueError("text embeddings without padding masks are not supported")
    emb = emb.masked_fill(filler, 0.0)
    for block in text_embed.text_blocks:
        emb = _convnext_block(block, emb, inside).masked_fill(filler, 0.0)
    return emb


def _convnext_block(block: torch.nn.Module, x: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """ConvNeXtV2Block.forward with its GRN's norm over the row's own frames only."""
    residual = x
    x = block.dwconv(x.transpose(1, 2)).transpose(1, 2)
    x = block.act(block.pwconv1(block.norm(x)))
    norm = torch.norm(x.masked_fill(~inside, 0.0), p=2, dim=1, keepdim=True)
    x = block.grn.gamma * (x * (norm / (norm.mean(dim=-1, keepdim=True) + 1e-6))) + block.grn.beta + x
    return residual + block.pwconv2(x)


def time_grid(nfe: int, sway_coef: float, device: torch.device) -> torch.Tensor:
    """EPSS / uniform grid with sway sampling, always float32 (bf16 grids are not monotonic)."""
    from f5_tts.model.utils import get_epss_timesteps

    t = get_epss_timesteps(nfe, device=device, dtype=torch.float32)
    return t + sway_coef * (torch.cos(torch.pi / 2 * t) - 1 + t)
