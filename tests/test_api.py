import multigrade as mg

PUBLIC = {
    "Callback", "Checkpoint", "FitInterrupted", "FitResult", "GradeParams", "GradeSummary",
    "ImageNotFoundError", "Layer", "MultiGrade",
    "MultiScale", "Regression", "Restoration", "apply_mlp", "coordinate_grid", "count_params",
    "deblurring", "denoising", "fit", "fit_sweep", "grade_features", "grade_output",
    "image_regression", "init_mlp", "load_image", "mgdl", "msdl", "predict", "psnr", "sgdl",
    "should_stop", "ssim", "stop_index", "synthetic",
}


def test_public_api_is_pinned():
    # Adding or removing a public name is a decision: update this list with it.
    assert set(mg.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(mg, name), name
