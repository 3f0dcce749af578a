"""The SAM-Med3D model: image encoder + prompt encoder + mask decoder, with official attribute names."""
from typing import Optional

import torch
from torch import nn

from .config import SamMed3DConfig
from .image_encoder import ImageEncoderViT3D
from .mask_decoder import MaskDecoder3D
from .prompt_encoder import PromptEncoder3D


class SamMed3D(nn.Module):
    """Drop-in for the official `SAM_Med3D`: same sub-modules, state-dict keys and call signatures."""

    mask_threshold = 0.0

    def __init__(self, config: SamMed3DConfig) -> None:
        super().__init__()
        self.config = config
        grid = config.grid_size
        self.image_encoder = ImageEncoderViT3D(
            img_size=config.image_size,
            patch_size=config.patch_size,
            embed_dim=config.encoder_embed_dim,
            depth=config.encoder_depth,
            num_heads=config.encoder_num_heads,
            mlp_ratio=config.mlp_ratio,
            out_chans=config.prompt_embed_dim,
            window_size=config.window_size,
            global_attn_indexes=config.encoder_global_attn_indexes,
        )
        self.prompt_encoder = PromptEncoder3D(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid, grid),
            input_image_size=(config.image_size,) * 3,
            mask_in_chans=config.mask_in_chans,
        )
        self.mask_decoder = MaskDecoder3D(
            transformer_dim=config.prompt_embed_dim,
            num_multimask_outputs=config.num_multimask_outputs,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
            transformer_depth=config.decoder_depth,
            transformer_heads=config.decoder_num_heads,
            transformer_mlp_dim=config.decoder_mlp_dim,
            attention_downsample_rate=config.attention_downsample_rate,
        )

    @property
    def device(self) -> torch.device:
        return self.mask_decoder.iou_token.weight.device

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """B x 1 x 128^3 normalised ROI -> B x C x 8^3 image embedding."""
        return self.image_encoder(image)

    def decode(
        self,
        embedding: torch.Tensor,
        coords: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        mask_logits: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Low-res logits (B x 1 x 32^3) for points (B x N x 3 ROI voxel coords, B x N labels 1/0; None: the mask
        prompt alone) and a mask prompt."""
        points = None if coords is None else (coords, labels)
        sparse, dense = self.prompt_encoder(points=points, boxes=None, masks=mask_logits)
        logits, _ = self.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return logits


def build_sam_med3d(config: Optional[SamMed3DConfig] = None) -> SamMed3D:
    """A randomly initialised model of `config` (default: the official ViT-B)."""
    return SamMed3D(config or SamMed3DConfig())
