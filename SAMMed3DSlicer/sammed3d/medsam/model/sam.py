"""The SAM 2D model (MedSAM's architecture): image encoder + prompt encoder + mask decoder, official names."""
from typing import Optional

import torch
from torch import nn

from .config import Sam2DConfig
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder


class Sam2D(nn.Module):
    """Drop-in for segment-anything's `Sam` (same sub-modules, state-dict keys and call signatures; no pixel
    normalisation buffers: MedSAM feeds the encoder 0..1 images itself)."""

    mask_threshold = 0.0

    def __init__(self, config: Sam2DConfig) -> None:
        super().__init__()
        self.config = config
        grid = config.grid_size
        self.image_encoder = ImageEncoderViT(
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
        self.prompt_encoder = PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        )
        self.mask_decoder = MaskDecoder(
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

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x 1024^2 images scaled to 0..1 -> B x 256 x 64^2 embeddings."""
        return self.image_encoder(images)

    def decode_boxes(self, embeddings: torch.Tensor, boxes: torch.Tensor,
                     mask_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Low-res logits (B x 1 x 256^2) for B embeddings and B boxes (x0, y0, x1, y1 in 1024^2 input pixels)."""
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes.reshape(-1, 1, 4), masks=mask_logits)
        logits, _ = self.mask_decoder(
            image_embeddings=embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return logits


def build_sam_2d(config: Optional[Sam2DConfig] = None) -> Sam2D:
    """A randomly initialised model of `config` (default: SAM ViT-B, the MedSAM architecture)."""
    return Sam2D(config or Sam2DConfig())
