"""Classical restoration baselines (`baselines`): their weights chosen by oracle, SURE or
the discrepancy principle."""

import jax
import jax.numpy as jnp
import numpy as np

from multigrade import baselines, selection
from multigrade.problems import deblurring
from test_selection import _smooth_image


def test_baseline_choices_follow_their_rules():
    clean = _smooth_image(32)
    sigma = 0.1
    y = clean + sigma * np.random.default_rng(1).standard_normal(clean.shape)
    weights = np.geomspace(0.01, 1.0, 7)
    oracle = baselines.tv_denoise(y, clean, weights=weights)
    by_sure = baselines.tv_denoise(y, clean, choice="sure", sigma=sigma, weights=weights)
    by_disc = baselines.tv_denoise(y, clean, choice="discrepancy", sigma=sigma,
                                   weights=weights)
    from skimage.restoration import denoise_tv_chambolle

    psnr = [-10 * np.log10(np.mean((denoise_tv_chambolle(y, weight=w) - clean) ** 2))
            for w in weights]
    assert oracle.value == weights[int(np.argmax(psnr))] and oracle.psnr == max(psnr)
    sures = [selection.mc_sure(lambda v, w=w: denoise_tv_chambolle(v, weight=w), y, sigma)
             for w in weights]
    assert by_sure.value == weights[int(np.argmin(sures))] and by_sure.choice == "sure"
    tau = selection.discrepancy_tau(y.size)
    fits = [w for w in weights
            if np.mean((denoise_tv_chambolle(y, weight=w) - y) ** 2) <= tau * sigma**2]
    assert by_disc.value == max(fits) and by_disc.name == "TV (Chambolle), discrepancy"
    assert oracle.psnr >= max(by_sure.psnr, by_disc.psnr)


def test_wiener_by_discrepancy_reads_the_residual_away_from_the_border():

    sigma = 0.005  # small enough that the boundary mismatch dominates the whole residual
    problem = deblurring(_smooth_image(64), 2.0, sigma, key=jax.random.key(0))
    y, clean = problem.observed_image(), problem.target_image()
    balances = np.geomspace(1e-3, 1.0, 7)
    found = baselines.wiener(y, clean, 2.0, choice="discrepancy", sigma=sigma,
                             balances=balances)
    inner = (slice(12, 52), slice(12, 52))  # twice the 6-pixel radius of σ_b = 2
    tau = selection.discrepancy_tau(40 * 40)

    def residual(b):
        x = baselines.wiener(y, clean, 2.0, balances=[b]).image
        blurred = np.asarray(problem.op(jnp.asarray(x[..., None])))[..., 0]
        return np.mean((blurred[inner] - y[inner]) ** 2)

    fits = [b for b in balances if residual(b) <= tau * sigma**2]
    assert fits and found.value == max(fits)
    assert found.psnr > 25  # not the noise-amplifying smallest balance
