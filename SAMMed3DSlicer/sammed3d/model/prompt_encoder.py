"""Prompt encoder: points (and a previous low-res mask) -> sparse and dense prompt embeddings."""
import math
from typing import Optional, Tuple

import torch
from torch import nn

from .common import LayerNorm3d


class PositionEmbeddingRandom3D(nn.Module):
    """Random Fourier features of positions normalised to [0, 1]^3."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((3, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * ((2 * coords - 1) @ self.positional_encoding_gaussian_matrix)
        # sin, cos, sin: the repeated sine is what the released weights were trained with.
        return torch.cat([torch.sin(angles), torch.cos(angles), torch.sin(angles)], dim=-1)

    def forward(self, size: Tuple[int, int, int]) -> torch.Tensor:
        """Encoding of every voxel centre of a grid of `size`: C x X x Y x Z.

        The first two coordinates are swapped (feature 0 follows grid axis 1, feature 1 follows axis 0), as in 2D
        SAM's x/y convention inherited by the official 3D code; the weights depend on it.
        """
        device = self.positional_encoding_gaussian_matrix.device
        axes = [(torch.arange(s, device=device, dtype=torch.float32) + 0.5) / s for s in size]
        along0, along1, along2 = torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij")
        coords = torch.stack([along1, along0, along2], dim=-1)
        return self._pe_encoding(coords).permute(3, 0, 1, 2)

    def forward_with_coords(self, coords: torch.Tensor, image_size: Tuple[int, int, int]) -> torch.Tensor:
        """Encoding of B x N x 3 points given in voxels of an image of `image_size`."""
        scale = torch.tensor(image_size, dtype=torch.float32, device=coords.device)
        return self._pe_encoding(coords.to(torch.float32) / scale)


class PromptEncoder3D(nn.Module):
    """Encodes point prompts (label 1 positive, 0 negative, -1 padding) and mask prompts."""

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: Tuple[int, int, int],
        input_image_size: Tuple[int, int, int],
        mask_in_chans: int,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom3D(embed_dim // 3)
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, embed_dim) for _ in range(2)])
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv3d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans),
            nn.GELU(),
            nn.Conv3d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: 1 x C x 8 x 8 x 8."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points + 0.5  # voxel centres
        if pad:
            b = points.shape[0]
            points = torch.cat([points, points.new_zeros((b, 1, 3))], dim=1)
            labels = torch.cat([labels, labels.new_full((b, 1), -1)], dim=1)
        embedding = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]
        embedding = torch.where(labels == -1, self.not_a_point_embed.weight, embedding)
        embedding = embedding + (labels == 0) * self.point_embeddings[0].weight
        embedding = embedding + (labels == 1) * self.point_embeddings[1].weight
        return embedding

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """points: (B x N x 3 voxel coordinates along the input's axes 0, 1, 2; B x N labels); masks: B x 1 x 32^3.

        Returns sparse (B x N+1 x C) and dense (B x C x 8^3) embeddings.
        """
        if boxes is not None:
            raise NotImplementedError("SAM-Med3D was trained without box prompts")
        device = self.no_mask_embed.weight.device
        if points is not None:
            batch = points[0].shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        else:
            batch = 1
        if points is not None:
            sparse = self._embed_points(points[0], points[1], pad=True)
        else:
            sparse = torch.empty((batch, 0, self.embed_dim), device=device)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1, 1).expand(batch, -1, *self.image_embedding_size)
        return sparse, dense
