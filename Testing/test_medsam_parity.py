"""Parity of sammed3d's SAM 2D (MedSAM) with segment-anything==1.0, every parameter and buffer randomized.

Acceptance: max abs error <= 1e-3 of the output's max magnitude, fp32 on the CPU. The tiny config (256^2 input,
16^2 tokens: windowed blocks pad 16 -> 28 like ViT-B's 64 -> 70) runs by default; the full ViT-B is marked slow.
"""
import copy

import pytest
import torch

from medsam_oracle import official_box_decode, paired_models, relative_error
from sammed3d.medsam.model import Sam2DConfig, build_sam_2d, config_from_state_dict

TINY = Sam2DConfig.named("tiny")
FULL = Sam2DConfig.named("vit_b")


def _images(config, seed, batch=1):
    return torch.rand(batch, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(seed))


def _boxes(config, seed, batch=1):
    corners = torch.rand(batch, 2, 2, generator=torch.Generator().manual_seed(seed)) * (config.image_size - 1)
    return torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)  # B x 4 (x0, y0, x1, y1)


@pytest.mark.parametrize("scale", [0.05, 0.2])
def test_tiny_encoder_matches_official(scale):
    official, ours = paired_models(TINY, seed=1, scale=scale)
    x = _images(TINY, 2, batch=2)
    with torch.inference_mode():
        expected, actual = official.image_encoder(x), ours.image_encoder(x)
    assert actual.shape == expected.shape == (2, 64, 16, 16)
    assert relative_error(actual, expected) <= 1e-3


def test_tiny_encoder_is_exact_in_float64_with_banded_global_attention(monkeypatch):
    """Float64 isolates the algorithm from rounding; a tiny bias budget forces the banded global attention."""
    from sammed3d.medsam.model import image_encoder

    monkeypatch.setattr(image_encoder, "BIAS_BUDGET", 4000)
    official, ours = paired_models(TINY, seed=3, scale=0.5)
    x = _images(TINY, 4).double()
    with torch.inference_mode():
        expected = copy.deepcopy(official).double().image_encoder(x)
        actual = copy.deepcopy(ours).double().image_encoder(x)
    assert relative_error(actual, expected) <= 1e-10


@pytest.mark.parametrize("budget", [1 << 20, 3000, 3 * 14 * 196])  # whole grids, one-row bands, 3-row bands
def test_tiny_encoder_cpu_kernels_match_official(monkeypatch, budget):
    """The CPU float32 block (row chunks, oneDNN fused linears, attention as GEMM bands with the bias added in place)
    in every attention block (windows too), with score budgets that give one-row bands, three-row bands or whole
    grids."""
    from sammed3d.model import cpu_fused
    from sammed3d.medsam.model import encoder_cpu

    if not cpu_fused.FUSED_OPS:
        pytest.skip("this torch build has no oneDNN linear ops")
    monkeypatch.setattr(encoder_cpu, "BANDED_MIN_TOKENS", 0)
    monkeypatch.setattr(encoder_cpu, "SCORE_BUDGET", budget)
    monkeypatch.setattr(encoder_cpu, "CHUNK_ROWS", 5)  # chunks that end inside windows and at window rows
    calls = []
    banded = encoder_cpu.banded_attention
    monkeypatch.setattr(encoder_cpu, "banded_attention", lambda *a: calls.append(1) or banded(*a))
    official, ours = paired_models(TINY, seed=11, scale=0.2)
    x = _images(TINY, 12, batch=2)
    with torch.inference_mode():
        expected, actual = official.image_encoder(x), ours.image_encoder(x)
    assert len(calls) == TINY.encoder_depth
    assert relative_error(actual, expected) <= 1e-4


def test_tiny_encoder_cpu_block_with_fused_windowed_attention_matches_official(monkeypatch):
    from sammed3d.model import cpu_fused
    from sammed3d.medsam.model import encoder_cpu

    if not cpu_fused.FUSED_OPS:
        pytest.skip("this torch build has no oneDNN linear ops")
    monkeypatch.setattr(encoder_cpu, "SDPA_BIAS_BUDGET", 5000)  # windowed bias built in several bands
    official, ours = paired_models(TINY, seed=13, scale=0.2)
    x = _images(TINY, 14, batch=2)
    with torch.inference_mode():
        assert relative_error(ours.image_encoder(x), official.image_encoder(x)) <= 1e-4


def test_traced_tiny_encoder_records_the_chunked_cpu_blocks_and_matches_official(monkeypatch):
    """The Slicer module traces the encoder (to run it without the GIL): the trace records the chunked CPU blocks,
    banded attention included, with plain linear layers."""
    import warnings

    from sammed3d.medsam.model import encoder_cpu

    monkeypatch.setattr(encoder_cpu, "BANDED_MIN_TOKENS", 0)
    monkeypatch.setattr(encoder_cpu, "SCORE_BUDGET", 3000)
    official, ours = paired_models(TINY, seed=15, scale=0.2)
    x = _images(TINY, 16)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(ours.image_encoder, x, check_trace=False)
        graph = str(traced.inlined_graph)
        assert "aten::_softmax" in graph and "mkldnn" not in graph
        assert relative_error(traced(x), official.image_encoder(x)) <= 1e-4


def test_cpu_kernels_are_not_used_for_autograd_autocast_or_tracing():
    from sammed3d.model.cpu_fused import fused_cpu

    x = torch.zeros(2, 3)
    with torch.inference_mode():
        assert fused_cpu(x) is cpu_fused_available()
        assert not fused_cpu(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not fused_cpu(x)
    assert not fused_cpu(x)  # grad mode on


def cpu_fused_available():
    from sammed3d.model import cpu_fused

    return cpu_fused.FUSED_OPS


@pytest.mark.parametrize("batch", [1, 2])
def test_tiny_prompt_encoder_points_boxes_masks_match_official(batch):
    official, ours = paired_models(TINY, seed=5)
    generator = torch.Generator().manual_seed(6)
    coords = torch.rand(batch, 3, 2, generator=generator) * 255
    labels = torch.tensor([[1, 0, 1]] * batch)
    boxes = _boxes(TINY, 7, batch)[:, None, :]
    masks = torch.randn(batch, 1, 64, 64, generator=generator) * 3
    cases = [((coords, labels), None, None), (None, boxes, None), ((coords, labels), boxes, masks), (None, None, masks)]
    with torch.inference_mode():
        for points, box, mask in cases:
            sparse_ref, dense_ref = official.prompt_encoder(points=points, boxes=box, masks=mask)
            sparse, dense = ours.prompt_encoder(points=points, boxes=box, masks=mask)
            assert sparse.shape == sparse_ref.shape and dense.shape == dense_ref.shape
            if sparse_ref.numel():
                assert relative_error(sparse, sparse_ref) <= 1e-5
            assert relative_error(dense, dense_ref) <= 1e-5
        assert relative_error(ours.prompt_encoder.get_dense_pe(), official.prompt_encoder.get_dense_pe()) <= 1e-6


@pytest.mark.parametrize("multimask", [False, True])
def test_tiny_decoder_with_box_matches_official(multimask):
    official, ours = paired_models(TINY, seed=8)
    embedding = torch.randn(1, 64, 16, 16, generator=torch.Generator().manual_seed(9))
    boxes = _boxes(TINY, 10, batch=2)  # two boxes on one image: the embedding is shared, as segment-anything does
    with torch.inference_mode():
        logits_ref, iou_ref = official_box_decode(official, embedding, boxes, multimask)
        logits, iou = official_box_decode(ours, embedding, boxes, multimask)
    assert logits.shape == logits_ref.shape == (2, 3 if multimask else 1, 64, 64)
    assert relative_error(logits, logits_ref) <= 1e-3
    assert relative_error(iou, iou_ref) <= 1e-3


def test_tiny_decode_boxes_pairs_batched_embeddings_with_boxes():
    """Several slices at once (the GPU batch): embedding i is decoded with box i, as one slice at a time."""
    _, ours = paired_models(TINY, seed=11)
    embeddings = torch.randn(3, 64, 16, 16, generator=torch.Generator().manual_seed(12))
    boxes = _boxes(TINY, 13, batch=3)
    with torch.inference_mode():
        batched = ours.decode_boxes(embeddings, boxes)
        single = torch.cat([ours.decode_boxes(embeddings[i:i + 1], boxes[i:i + 1]) for i in range(3)])
    assert relative_error(batched, single) <= 1e-5


@pytest.mark.parametrize("config", [TINY, FULL], ids=["tiny", "vit_b"])
def test_config_is_read_back_from_the_state_dict(config):
    assert config_from_state_dict(build_sam_2d(config).state_dict()) == config


@pytest.mark.slow
def test_full_vit_b_matches_official():
    """SAM ViT-B (MedSAM's architecture): encoder on a 1024^2 input, prompt encoder with a box, decoder."""
    official, ours = paired_models(FULL, seed=14)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in official.parameters())
    x = _images(FULL, 15)
    boxes = _boxes(FULL, 16)
    with torch.inference_mode():
        expected, actual = official.image_encoder(x), ours.image_encoder(x)
        assert actual.shape == (1, 256, 64, 64)
        assert relative_error(actual, expected) <= 1e-3
        sparse_ref, dense_ref = official.prompt_encoder(points=None, boxes=boxes[:, None], masks=None)
        sparse, dense = ours.prompt_encoder(points=None, boxes=boxes[:, None], masks=None)
        assert relative_error(sparse, sparse_ref) <= 1e-5 and relative_error(dense, dense_ref) <= 1e-5
        logits_ref, iou_ref = official_box_decode(official, expected, boxes)
        logits, iou = official_box_decode(ours, expected, boxes)
        assert relative_error(logits, logits_ref) <= 1e-3 and relative_error(iou, iou_ref) <= 1e-3
