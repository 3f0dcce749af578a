"""Test helpers: the official SAM-Med3D (medim==0.1.2, test-only) with every parameter and buffer randomized."""
import copy

import torch

from sammed3d.model import SamMed3DConfig, build_sam_med3d


def official_model(config: SamMed3DConfig):
    """The official implementation at `config`'s size (medim is imported here only, never by the package)."""
    import medim

    return medim.create_model(
        "SAM-Med3D",
        encoder_embed_dim=config.encoder_embed_dim,
        encoder_depth=config.encoder_depth,
        encoder_num_heads=config.encoder_num_heads,
        encoder_global_attn_indexes=list(config.encoder_global_attn_indexes),
        prompt_embed_dim=config.prompt_embed_dim,
    ).eval()


def randomize_(model: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
    """Overwrite EVERY parameter and buffer (rel-pos tables, pos_embed, Fourier matrix included) with noise.

    The official init leaves the relative-position tables and the absolute position embedding at zero, which would
    hide bugs in those paths. Norm weights are drawn around 1 so activations keep a sensible range.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64).to(tensor.dtype)
            if "norm" in name and name.endswith("weight") or name.endswith(("neck.1.weight", "neck.3.weight")):
                tensor.copy_(1 + scale * noise)
            else:
                tensor.copy_(scale * noise)
    return model


def paired_models(config: SamMed3DConfig, seed: int = 0, scale: float = 0.1):
    """(official, ours) holding the same randomized weights, in eval mode."""
    official = randomize_(official_model(config), seed, scale)
    ours = build_sam_med3d(config).eval()
    ours.load_state_dict(official.state_dict(), strict=True)
    return official, ours


def as_double(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).double()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|: the parity measure of the issue."""
    return float((actual.double() - expected.double()).abs().max() / expected.double().abs().max())


def official_decode(model, embedding, coords, labels, mask=None):
    """(low-res logits, IoU) through the official call signatures: prompt encoder, then mask decoder, one mask."""
    sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=mask)
    return model.mask_decoder(
        image_embeddings=embedding,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
