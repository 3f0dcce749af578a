"""Test oracle for MedSAM: segment-anything==1.0 (Meta's SAM code, the same modelling code MedSAM vendors) and the
official slice pipeline written from SPEC section 8 (MedSAM `pre_CT_MR.py` / `MedSAM_Inference.py`).

segment-anything's package `__init__` imports its predictor, which needs torchvision (no CPU build here). We register
an empty `segment_anything` package whose `__path__` points at the installed files, so only `modeling` and
`build_sam` are imported. Test-only: never imported by the package.
"""
import importlib.util
import sys
import types
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from oracle import randomize_
from sammed3d.medsam.model import Sam2DConfig, build_sam_2d


def segment_anything_modules():
    """(modeling, build_sam) of segment-anything without importing its torchvision-dependent predictor."""
    if "segment_anything" not in sys.modules or not hasattr(sys.modules["segment_anything"], "modeling"):
        spec = importlib.util.find_spec("segment_anything")
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = package
    import segment_anything.build_sam as build_sam
    import segment_anything.modeling as modeling

    return modeling, build_sam


def official_model(config: Sam2DConfig):
    """segment-anything's `Sam` at `config`'s size (ViT-B: exactly `build_sam_vit_b`)."""
    modeling, build_sam = segment_anything_modules()
    if config == Sam2DConfig():
        return build_sam.build_sam_vit_b(checkpoint=None).eval()
    grid = config.grid_size
    return modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=config.encoder_depth, embed_dim=config.encoder_embed_dim, img_size=config.image_size,
            mlp_ratio=config.mlp_ratio, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.encoder_num_heads, patch_size=config.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=list(config.encoder_global_attn_indexes), window_size=config.window_size,
            out_chans=config.prompt_embed_dim,
        ),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=config.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size), mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=config.num_multimask_outputs,
            transformer=modeling.TwoWayTransformer(
                depth=config.decoder_depth, embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim, num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim, iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
    ).eval()


def paired_models(config: Sam2DConfig, seed: int = 0, scale: float = 0.1):
    """(official, ours) with the same randomized weights (every parameter and buffer), in eval mode."""
    official = randomize_(official_model(config), seed, scale)
    ours = build_sam_2d(config).eval()
    ours.load_state_dict(official.state_dict(), strict=True)
    return official, ours


def official_box_decode(model, embedding, boxes_1024, multimask_output=False):
    """MedSAM_Inference.medsam_inference's model calls: (low-res logits, IoU) for B x 4 boxes in 1024^2 pixels."""
    box_torch = torch.as_tensor(boxes_1024, dtype=torch.float)
    if box_torch.dim() == 2:
        box_torch = box_torch[:, None, :]
    sparse, dense = model.prompt_encoder(points=None, boxes=box_torch, masks=None)
    return model.mask_decoder(
        image_embeddings=embedding, image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask_output,
    )


# -- the official slice pipeline (SPEC section 8), written independently of sammed3d.medsam.preprocessing ---------
def official_ct_volume_uint8(array_kji: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """pre_CT_MR.py, CT branch: clip to the window, min-max over the volume to 0..255, np.uint8."""
    lower, upper = level - width / 2, level + width / 2
    pre = np.clip(array_kji, lower, upper)
    pre = (pre - np.min(pre)) / (np.max(pre) - np.min(pre)) * 255.0
    return np.uint8(pre)


def official_slice_segmentation(model, slice_uint8: np.ndarray, box_xyxy) -> np.ndarray:
    """MedSAM_Inference.py on one H x W uint8 slice and a box [x0, y0, x1, y1] in slice pixels -> H x W uint8."""
    from skimage import transform

    img_3c = np.repeat(slice_uint8[:, :, None], 3, axis=-1)
    H, W, _ = img_3c.shape
    size = model.image_encoder.img_size  # 1024 for MedSAM; smaller for the tiny test model
    img_1024 = transform.resize(img_3c, (size, size), order=3, preserve_range=True,
                                anti_aliasing=True).astype(np.uint8)
    img_1024 = (img_1024 - img_1024.min()) / np.clip(img_1024.max() - img_1024.min(), a_min=1e-8, a_max=None)
    tensor = torch.tensor(img_1024).float().permute(2, 0, 1).unsqueeze(0)
    box_1024 = np.array([box_xyxy]) / np.array([W, H, W, H]) * size
    with torch.no_grad():
        embedding = model.image_encoder(tensor)
        logits, _ = official_box_decode(model, embedding, box_1024)
    probability = F.interpolate(torch.sigmoid(logits), size=(H, W), mode="bilinear", align_corners=False)
    return (probability.squeeze().cpu().numpy() > 0.5).astype(np.uint8)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|."""
    return float((actual.double() - expected.double()).abs().max() / expected.double().abs().max())
