import multigrade as mg

PUBLIC = {
    "AdaptiveGrades", "apply_mlp", "Callback", "Checkpoint", "coordinate_grid",
    "count_params", "deblurring", "denoising", "Divergence", "fit", "fit_sweep",
    "FitInterrupted", "FitResult", "grade_features", "grade_output", "GradeParams",
    "GradeSummary", "image_regression", "ImageNotFoundError", "init_mlp", "Layer",
    "load_image", "mgdl", "msdl", "MultiGrade", "MultiScale", "predict", "Probe", "psnr",
    "Regression", "Restoration", "sgdl", "should_stop", "ssim", "stop_index", "synthetic",
}


def test_public_api_is_pinned():
    # Adding or removing a public name is a decision: update this list with it.
    assert set(mg.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(mg, name), name
