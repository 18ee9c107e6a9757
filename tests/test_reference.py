"""Pinned to the paper's own code: the same start gives the same trajectory.

../shared/fixtures/reference-denoise holds a case computed by the authors' MGDL denoising
code (2 grades × 200 epochs, float64, u active): its observation, every grade's initial
parameters and the per-epoch loss, PSNR, scale factors, final u and prediction. The
library, started from the same parameters on the same observation, must agree to float64
rounding (the fixture's README: 1.6e-15 relative on the loss; we allow 1e-12).
"""

import dataclasses
import functools
import json
import os
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import multigrade as mg
from multigrade.model import GradeParams
from multigrade.nn import Layer
from multigrade.problems import from_observation

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference-denoise"


@pytest.fixture(scope="module")
def case():
    if not (FIXTURE / "case.npz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the reference fixture is missing: {FIXTURE}")
        pytest.skip("../shared/fixtures/reference-denoise is not next to this checkout")
    with np.load(FIXTURE / "case.npz", allow_pickle=False) as data:
        arrays = dict(data)
    return arrays, json.loads((FIXTURE / "config.json").read_text())


def _grade_params(arrays, k, layers):
    def layer(name):
        return Layer(arrays[f"init/grade{k}/{name}/W"], arrays[f"init/grade{k}/{name}/b"])

    return GradeParams([layer(f"layer{i}") for i in range(layers)], layer("out"))


def _run(arrays, cfg, *, problem=None, epochs=None):
    if problem is None:
        problem = from_observation(arrays["clean"], arrays["noisy"], beta=cfg["beta"],
                                   lam=cfg["lambda"], alpha=cfg["alpha"])
        np.testing.assert_array_equal(problem.coords, arrays["coords"])  # same pixel order
    L, K = cfg["hidden_layers_per_grade"], cfg["grades"]
    model = mg.mgdl([[cfg["width"]] * L] * K)
    opt = cfg["optimizer"]
    result = mg.fit(model, problem, optimizer=optax.adam(opt["lr"], b1=opt["b1"], b2=opt["b2"],
                                                         eps=opt["eps"]),
                    epochs=epochs or cfg["epochs_per_grade"], key=jax.random.key(0),
                    record_every=1,
                    init_params=[_grade_params(arrays, k, L) for k in range(1, K + 1)])
    return problem, result


def test_denoising_follows_the_papers_code_epoch_by_epoch(case):
    arrays, cfg = case
    assert jax.config.jax_enable_x64, "the reference is float64"
    problem, r = _run(arrays, cfg)
    h = r.history
    for k in (1, 2):  # the agreement reached, for the record (pytest -s)
        sel = h["grade"] == k
        ref, ref_psnr = arrays[f"ref/grade{k}/loss"], arrays[f"ref/grade{k}/psnr"]
        print(f"grade {k}: loss rel. diff {np.max(np.abs(h['train_loss'][sel] - ref) / ref):.1e}"
              f", PSNR diff {np.max(np.abs(h['test_psnr'][sel] - ref_psnr)):.1e} dB")
    u_entries = []
    for k in (1, 2):
        sel = h["grade"] == k
        np.testing.assert_allclose(h["train_loss"][sel], arrays[f"ref/grade{k}/loss"],
                                   rtol=1e-12, atol=0)
        np.testing.assert_allclose(h["test_psnr"][sel], arrays[f"ref/grade{k}/psnr"],
                                   rtol=0, atol=1e-10)
        np.testing.assert_allclose(r.predictions[k - 1].reshape(32, 32),
                                   arrays[f"ref/grade{k}/prediction"], rtol=0, atol=1e-12)
        u_entries.append(np.count_nonzero(arrays[f"ref/grade{k}/u"]))
    assert r.scales[0] == 1.0
    np.testing.assert_allclose(r.scales[1], float(arrays["ref/grade2/scale"]), rtol=1e-14)
    u = np.asarray(r.aux)[..., 0].reshape(64, 32)  # [D_v P; D_h P]
    np.testing.assert_allclose(u, arrays["ref/u"], rtol=0, atol=1e-12)
    # u was active, so its update was tested (the fixture's README: 54 and 533 entries)
    assert u_entries == cfg["u_nonzero_end_of_grade"] and np.count_nonzero(u) == 533


@functools.partial(jax.tree_util.register_dataclass, data_fields=["inner"],
                   meta_fields=["change"])
@dataclasses.dataclass(frozen=True)
class Altered:
    """The paper's problem with one change: `"late u"` (the gradient step uses the u of
    the epoch before, as if the u update came after the step) or `"scale from P"` (s_k
    from the prediction instead of the residual P − y)."""

    inner: object
    change: str

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def init_aux(self, pred):
        u = self.inner.init_aux(pred)
        return (u, u) if self.change == "late u" else u

    def _u(self, aux):
        return aux[0] if self.change == "late u" else aux

    def update_aux(self, aux, pred):
        if self.change == "late u":
            return aux[1], self.inner.update_aux(aux[1], pred)
        return self.inner.update_aux(aux, pred)

    def loss(self, pred, aux):
        return self.inner.loss(pred, self._u(aux))

    def metrics(self, preds, aux):
        return self.inner.metrics(preds, self._u(aux))

    def next_scale(self, pred):
        if self.change == "scale from P":
            return jax.numpy.sqrt(jax.numpy.mean(pred ** 2))
        return self.inner.next_scale(pred)


@pytest.mark.parametrize("change", ["late u", "scale from P"])
def test_the_fixture_detects_a_changed_algorithm(case, change):
    arrays, cfg = case
    problem, _ = _run(arrays, cfg, epochs=40)
    _, r = _run(arrays, cfg, problem=Altered(problem, change), epochs=40)
    ref = np.concatenate([arrays["ref/grade1/loss"][:40], arrays["ref/grade2/loss"][:40]])
    worst = np.max(np.abs(r.history["train_loss"] - ref) / ref)
    print(f"{change}: loss rel. diff up to {worst:.1e}")
    assert worst > 1e-6  # a million times the tolerance the faithful run meets


# --------------------------------------------------------------------------------------
# Image regression: the same loop, checked against NumPy from given parameters


def _numpy_grade_step(params, x, y, base, state, t, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step of ½·mean((base + g(x) − y)²) on a grade, forward and backward by
    hand (ReLU'(0) = 0, as in JAX)."""
    acts, zs = [x], []
    for W, b in params[:-1]:
        zs.append(acts[-1] @ W + b)
        acts.append(np.maximum(zs[-1], 0.0))
    Wo, bo = params[-1]
    r = (base + acts[-1] @ Wo + bo - y) / y.size
    grads = [(acts[-1].T @ r, r.sum(0))]
    delta = r @ Wo.T
    for i in reversed(range(len(params) - 1)):
        delta = delta * (zs[i] > 0)
        grads.insert(0, (acts[i].T @ delta, delta.sum(0)))
        delta = delta @ params[i][0].T
    new = []
    for (p, g), (m, v) in zip(zip(params, grads), state):
        layer = []
        for j in range(2):
            m[j] = b1 * m[j] + (1 - b1) * g[j]
            v[j] = b2 * v[j] + (1 - b2) * g[j] ** 2
            mhat, vhat = m[j] / (1 - b1 ** t), v[j] / (1 - b2 ** t)
            layer.append(p[j] - lr * mhat / (np.sqrt(vhat) + eps))
        new.append(tuple(layer))
    return new


def _numpy_forward(params, x):
    for W, b in params[:-1]:
        x = np.maximum(x @ W + b, 0.0)
    return x, x @ params[-1][0] + params[-1][1]


def test_image_regression_follows_numpy_from_the_same_start():
    image = mg.load_image("camera", size=12)
    problem = mg.image_regression(image)
    x, y = np.asarray(problem.x["train"]), np.asarray(problem.y["train"])
    rng = np.random.default_rng(0)
    widths = [[6, 5], [4, 3]]
    given, sizes = [], [2]
    for w in widths:
        dims = [sizes[-1], *w, 1]
        given.append([(rng.normal(size=(m, n)) / np.sqrt(m), 0.1 * rng.normal(size=n))
                      for m, n in zip(dims[:-1], dims[1:])])
        sizes.append(w[-1])
    init = [GradeParams([Layer(*p) for p in g[:-1]], Layer(*g[-1])) for g in given]
    steps = 4
    r = mg.fit(mg.mgdl(widths), problem, optimizer=optax.adam(1e-2), epochs=steps,
               key=jax.random.key(0), record_every=1, init_params=init)
    feats, base, losses = x, np.zeros_like(y), []
    for g in given:
        params = [tuple(np.array(a) for a in p) for p in g]
        state = [([np.zeros_like(p[0]), np.zeros_like(p[1])],
                  [np.zeros_like(p[0]), np.zeros_like(p[1])]) for p in params]
        for t in range(1, steps + 1):
            params = _numpy_grade_step(params, feats, y, base, state, t)
            losses.append(0.5 * np.mean((base + _numpy_forward(params, feats)[1] - y) ** 2))
        phi, out = _numpy_forward(params, feats)
        feats, base = phi, base + out
        trained = r.params[len(losses) // steps - 1]
        for (W, b), layer in zip(params, [*trained.hidden, trained.head]):
            np.testing.assert_allclose(layer.W, W, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(layer.b, b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(r.history["train_loss"], losses, rtol=1e-12)
