"""The bundled demo model: small, safetensors, official-compatible, documented, and better than chance."""
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from oracle import official_model

from sammed3d import load_model
from sammed3d.evaluation import click_to_ras, dice, evaluate_case, load_label_in_image_grid, make_clicker, read_image
from sammed3d.model import SamMed3DConfig
from sammed3d.weights import read_state_dict

DATA = Path(__file__).resolve().parents[1] / "SAMMed3DSlicer" / "sammed3d" / "data"
CT = Path(__file__).resolve().parent / "Data" / "ct_abdomen_3mm"


def test_demo_model_file_card_and_official_compatibility():
    weights = DATA / "sam_med3d_demo.safetensors"
    assert weights.stat().st_size <= 20 * 1024 * 1024
    assert weights.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, then JSON
    card = (DATA / "MODEL_CARD.md").read_text()
    for needed in ("Training data", "Command", "Wall time", "Metrics", "training data"):
        assert needed in card
    model = load_model("demo")
    assert model.config == SamMed3DConfig.named("tiny")
    official_model(model.config).load_state_dict(read_state_dict(weights), strict=True)


def _dice_after_clicks(model, image, gt, counts=(1, 5)):
    from sammed3d.session import InteractiveSession

    session = InteractiveSession(model, image)

    def predict(clicks):
        session.set_clicks([click_to_ras(image, c) for c in clicks])
        return session.mask_array() > 0

    results = evaluate_case(predict, image, gt, make_clicker("ritm", 0, "demo-test"), list(counts))
    scores = [dice(gt, r.mask) for r in results]
    assert np.isfinite(scores).all()
    return scores


def test_demo_model_segments_the_liver_with_a_few_clicks():
    image = read_image(str(CT / "image.nii.gz"))
    gt = sitk.GetArrayFromImage(load_label_in_image_grid(str(CT / "labels.nii.gz"), image)) == 5  # liver
    scores = _dice_after_clicks(load_model("demo"), image, gt)
    assert scores[-1] > 0.5, scores  # 0.65 measured; random weights give ~0.15


def test_demo_model_reads_an_mr_like_contrast():
    """The bundled CT with a T2-weighted-like intensity curve (fluid bright, fat mid, soft tissue dark; no labels
    used): organs are still found. The demo model never saw this image's contrast."""
    image = read_image(str(CT / "image.nii.gz"))
    labels = sitk.GetArrayFromImage(load_label_in_image_grid(str(CT / "labels.nii.gz"), image))
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    t2_like = np.interp(hu, [-1000, -500, -100, 0, 20, 60, 150, 400, 1500],
                        [5, 20, 400, 900, 700, 250, 300, 80, 40]).astype(np.float32)
    mr_like = sitk.GetImageFromArray(t2_like)
    mr_like.CopyInformation(image)
    model = load_model("demo")
    scores = [_dice_after_clicks(model, mr_like, labels == value)[-1] for value in (5, 1, 2)]  # liver, spleen, kidney
    assert np.mean(scores) > 0.57, scores  # 0.61 measured (5 clicks); previous demo model 0.55, random weights ~0.15
