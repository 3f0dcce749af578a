"""SAM ViT 2D (MedSAM) configuration, and reading it back from a state dict (any SAM-format size loads)."""
import re
from dataclasses import dataclass
from typing import Dict, Tuple

import torch

from ...errors import CheckpointError


@dataclass(frozen=True)
class Sam2DConfig:
    """Hyper-parameters of a SAM 2D network. Defaults: SAM ViT-B (the architecture of MedSAM)."""

    image_size: int = 1024
    patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: Tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    @property
    def grid_size(self) -> int:
        """Tokens per axis of the image embedding (64 for 1024^2 input and 16^2 patches)."""
        return self.image_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        """Size per axis of the low-resolution mask logits (image_size / 4: 256)."""
        return self.grid_size * 4

    @classmethod
    def named(cls, name: str) -> "Sam2DConfig":
        """`vit_b` (SAM ViT-B / MedSAM) or `tiny` (a small test model: 256^2 input, 16^2 tokens, 14^2 windows)."""
        if name in ("vit_b", "full"):
            return cls()
        if name == "tiny":
            return cls(
                image_size=256,
                encoder_embed_dim=96,
                encoder_depth=4,
                encoder_num_heads=4,
                encoder_global_attn_indexes=(1, 3),
                prompt_embed_dim=64,
                decoder_mlp_dim=256,
                iou_head_hidden_dim=64,
            )
        raise ValueError("unknown model config %r (known: vit_b, tiny)" % name)


def _shape(state_dict, key) -> Tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError("not a SAM checkpoint: it has no %r tensor" % key)
    return tuple(state_dict[key].shape)


def _count(state_dict, pattern: str) -> int:
    regex = re.compile(pattern)
    indices = {int(m.group(1)) for m in map(regex.match, state_dict) if m}
    return max(indices) + 1 if indices else 0


def config_from_state_dict(state_dict: Dict[str, torch.Tensor]) -> Sam2DConfig:
    """Infer the architecture from tensor shapes: embed dim, depth, heads, global vs windowed blocks, decoder size."""
    pos = _shape(state_dict, "image_encoder.pos_embed")  # 1 x g x g x C
    if len(pos) != 4:
        raise CheckpointError("not a 2D SAM checkpoint: image_encoder.pos_embed has shape %s" % (pos,))
    grid, embed = pos[1], pos[-1]
    patch = _shape(state_dict, "image_encoder.patch_embed.proj.weight")[-1]
    depth = _count(state_dict, r"image_encoder\.blocks\.(\d+)\.")
    if depth == 0:
        raise CheckpointError("not a SAM checkpoint: the image encoder has no blocks")
    head_dim = _shape(state_dict, "image_encoder.blocks.0.attn.rel_pos_h")[1]
    global_blocks, window = [], 0
    for index in range(depth):
        table = _shape(state_dict, "image_encoder.blocks.%d.attn.rel_pos_h" % index)[0]
        if table == 2 * grid - 1:
            global_blocks.append(index)
        else:
            window = (table + 1) // 2
    mlp_hidden = _shape(state_dict, "image_encoder.blocks.0.mlp.lin1.weight")[0]
    prompt_embed = _shape(state_dict, "image_encoder.neck.0.weight")[0]
    cross_internal = _shape(state_dict, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0]
    return Sam2DConfig(
        image_size=grid * patch,
        patch_size=patch,
        encoder_embed_dim=embed,
        encoder_depth=depth,
        encoder_num_heads=embed // head_dim,
        encoder_global_attn_indexes=tuple(global_blocks),
        window_size=window or 14,
        mlp_ratio=mlp_hidden / embed,
        prompt_embed_dim=prompt_embed,
        mask_in_chans=_shape(state_dict, "prompt_encoder.mask_downscaling.3.weight")[0],
        decoder_depth=_count(state_dict, r"mask_decoder\.transformer\.layers\.(\d+)\."),
        decoder_mlp_dim=_shape(state_dict, "mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
        attention_downsample_rate=prompt_embed // cross_internal,
        num_multimask_outputs=_shape(state_dict, "mask_decoder.mask_tokens.weight")[0] - 1,
        iou_head_depth=_count(state_dict, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        iou_head_hidden_dim=_shape(state_dict, "mask_decoder.iou_prediction_head.layers.0.weight")[0],
    )
