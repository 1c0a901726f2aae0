"""2D models (DCGAN, VAE, VAE/GAN): shapes, options, state, seeding, short learning runs, the driver."""
import io as _io

import numpy as np
import pytest
import torch

from matgen_core import generate, runs, train
from matgen_core.data import decode, encode
from matgen_core.diversity import diversity, evaluate_samples, mean_pairwise_distance, random_crops
from matgen_core.errors import MatgenInputError
from matgen_core.io import Micrograph
from matgen_core.models import presets, trainer_class
from matgen_core.models.dcgan import Discriminator, Generator
from conftest import blobs, stripes

# Tiny networks on 32 px crops: every model trains a step in well under a second on one core.
TINY = {
    "dcgan": dict(img_size=32, ngf=8, ndf=8, batch_size=16),
    "vae": dict(img_size=32, channels=[8, 16, 32, 64, 64], batch_size=16),
    "vaegan": dict(img_size=32, channels=[8, 16, 32, 64, 64], ndf=8, batch_size=16),
}
MODELS = tuple(TINY)


def make(model, images=None, kind="nphase", n_phases=2, preset="quick", **over):
    config = {**presets(model)[preset], **TINY[model], "kind": kind, "n_phases": n_phases,
              "num_images": 1, **over}
    return trainer_class(model).create(config, images, torch.device("cpu"))


def labels(samples, kind="nphase"):
    return np.stack([decode(s, kind) for s in samples])


# ---------------------------------------------------------------------------------- presets ----
@pytest.mark.parametrize("model", MODELS)
def test_presets_have_paper_and_quick_with_steps(model):
    ps = presets(model)
    assert set(ps) == {"paper", "quick"}
    for p in ps.values():
        assert isinstance(p["steps"], int) and p["steps"] > 0
    assert ps["paper"]["batch_size"] == 64


def test_dcgan_paper_preset_is_the_reports_setup():
    p = presets("dcgan")["paper"]
    assert (p["loss"], p["norm"], p["spectral_norm"], p["img_size"]) == ("bce", "batch", True, 64)
    tr = make("dcgan", preset="paper", img_size=64, ngf=4, ndf=4)
    assert tr.nz == 32, "latent size = image size / 2"
    assert make("dcgan", img_size=128, ngf=4, ndf=4, nz=None).nz == 64


def test_vae_has_five_conv_layers_and_latent_64():
    p = presets("vae")["paper"]
    assert p["nz"] == 64 and len(p["channels"]) == 5
    tr = make("vae", preset="paper", img_size=64, channels=[4, 4, 4, 4, 4])
    convs = lambda m, t: [x for x in m.modules() if isinstance(x, t)]
    assert len(convs(tr.encoder, torch.nn.Conv2d)) == 5
    assert len(convs(tr.decoder, torch.nn.ConvTranspose2d)) == 5
    assert tr.encoder.fc.out_features == 2 * 64


# ------------------------------------------------------------------------------- DCGAN nets ----
@pytest.mark.parametrize("size", [64, 128])
def test_dcgan_networks_make_and_judge_64_and_128_px(size):
    g, d = Generator(size // 2, size, 3, ngf=4), Discriminator(size, 3, ndf=4)
    with torch.no_grad():
        x = g(torch.randn(2, size // 2, 1, 1))
        assert x.shape == (2, 3, size, size)
        assert d(x).shape == (2,)


def test_bad_image_size_is_a_clear_error():
    with pytest.raises(MatgenInputError, match="power of two"):
        make("dcgan", img_size=48)
    with pytest.raises(MatgenInputError, match="power of two"):
        make("vae", img_size=16)


@pytest.mark.parametrize("norm,layer", [("batch", torch.nn.BatchNorm2d),
                                        ("instance", torch.nn.InstanceNorm2d), ("none", None)])
def test_generator_norms_construct_and_train(norm, layer):
    torch.manual_seed(0)
    tr = make("dcgan", [blobs(64)], norm=norm, loss="bce", critic_iters=1)
    kinds = {type(m) for m in tr.generator.modules()}
    norms = kinds & {torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d}
    assert norms == ({layer} if layer else set())
    losses = tr.train_step(0)
    assert set(losses) == set(tr.loss_names) and all(np.isfinite(list(losses.values())))
    assert tr.sample_images(3, seed=0).shape == (3, 2, 32, 32)


def test_spectral_norm_on_by_default_and_can_be_turned_off():
    from torch.nn.utils import parametrize

    on, off = make("dcgan", [blobs(64)]), make("dcgan", [blobs(64)], spectral_norm=False)
    assert all(parametrize.is_parametrized(c, "weight") for c in on.discriminator.convs)
    assert not any(parametrize.is_parametrized(c) for c in off.discriminator.convs)
    for tr in (on, off):
        assert np.isfinite(tr.train_step(0)["discriminator"])
    # spectral norm keeps every layer's largest singular value at about 1
    tr = make("dcgan", [blobs(64)])
    for _ in range(3):
        tr.train_step(0)
    with torch.no_grad():  # a few more power iterations (one per forward) to settle the estimate
        for _ in range(30):
            tr.discriminator(torch.rand(2, 2, 32, 32))
    w = tr.discriminator.convs[1].weight.detach()
    assert torch.linalg.matrix_norm(w.flatten(1), ord=2) == pytest.approx(1.0, abs=0.05)


def test_bce_and_wgan_gp_losses():
    torch.manual_seed(0)
    bce = make("dcgan", [blobs(64)], loss="bce", critic_iters=1).train_step(0)
    assert bce["gradient_penalty"] == 0.0 and 0.0 <= bce["d_real"] <= 1.0
    wgan = make("dcgan", [blobs(64)], loss="wgan-gp", critic_iters=2).train_step(0)
    assert wgan["gradient_penalty"] > 0.0 and np.isfinite(wgan["generator"])
    with pytest.raises(MatgenInputError, match="loss"):
        make("dcgan", loss="hinge")


# ---------------------------------------------------------------------- protocol, all models ----
@pytest.mark.parametrize("model", MODELS)
def test_sampling_is_seeded_and_restores_train_mode(model):
    tr = make(model, [blobs(64)])
    tr.train_step(0)
    a, b, c = tr.sample_images(5, seed=3), tr.sample_images(5, seed=3), tr.sample_images(5, seed=4)
    assert a.shape == (5, 2, 32, 32) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.allclose(a.sum(1), 1.0, atol=1e-5), "softmax over phases"
    assert np.allclose(tr.sample_images(2, seed=3), a[:2], atol=1e-5), "samples do not depend on the batch"
    nets = [m for m in vars(tr).values() if isinstance(m, torch.nn.Module)]
    assert nets and all(m.training for m in nets)


@pytest.mark.parametrize("model", MODELS)
def test_state_dict_round_trip_with_weights_only_load(model):
    torch.manual_seed(0)
    tr = make(model, [blobs(64)])
    for step in range(2):
        tr.train_step(step)
    buf = _io.BytesIO()
    torch.save(tr.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = make(model, [blobs(64)])
    fresh.load_state_dict(state)
    assert np.array_equal(fresh.sample_images(4, seed=1), tr.sample_images(4, seed=1))
    # optimisers too: the next step is the same step
    torch.manual_seed(5)
    a = tr.train_step(2)
    torch.manual_seed(5)
    b = fresh.train_step(2)
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    # a generating trainer (no data) loads the same checkpoint
    make(model, None).load_state_dict(state)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind,channels", [("gray", 1), ("color", 3)])
def test_gray_and_colour_data(model, kind, channels):
    rng = np.random.default_rng(0)
    image = rng.random((48, 48, 3) if kind == "color" else (48, 48)).astype(np.float32)
    tr = make(model, [image], kind=kind, n_phases=0)
    assert np.isfinite(list(tr.train_step(0).values())).all()
    out = tr.sample_images(2, seed=0)
    assert out.shape == (2, channels, 32, 32) and out.min() >= 0.0 and out.max() <= 1.0
    prev = tr.preview()
    assert prev.dtype == np.uint8 and prev.ndim == (3 if kind == "color" else 2)


@pytest.mark.parametrize("model", ["vae", "vaegan"])
def test_vae_reconstructs_and_previews_samples_and_reconstructions(model):
    img = stripes(64, period=8, fraction=0.375)
    tr = make(model, [img])
    crops = random_crops(img, 32, 3, seed=1)
    onehot = np.stack([encode(c, "nphase", 2) for c in crops])
    rec = tr.reconstruct(onehot)
    assert rec.shape == (3, 2, 32, 32) and np.array_equal(rec, tr.reconstruct(onehot))
    with pytest.raises(ValueError, match="reconstruct needs"):
        tr.reconstruct(onehot[:, :1])
    prev = tr.preview()  # 3 rows of 4: prior samples, training crops, reconstructions
    assert prev.shape == (3 * 34 - 2, 4 * 34 - 2) and prev.dtype == np.uint8
    assert make(model, None).preview().shape == (32, 4 * 34 - 2), "no data: samples only"


def test_vae_reconstruction_and_kl_terms():
    from matgen_core.models.vae import kl_divergence, reconstruction_loss

    mu, logvar = torch.zeros(4, 64), torch.zeros(4, 64)
    assert kl_divergence(mu, logvar).item() == pytest.approx(0.0)
    assert kl_divergence(mu + 1, logvar).item() == pytest.approx(32.0)
    target = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 8, 8)), 3).permute(0, 3, 1, 2).float()
    uniform = reconstruction_loss(torch.zeros(2, 3, 8, 8), target, "nphase")
    assert uniform.item() == pytest.approx(64 * np.log(3), rel=1e-5), "nats per image, summed over pixels"
    assert reconstruction_loss(100 * (2 * target - 1), target, "nphase").item() < 1e-3


# ------------------------------------------------------------------------ learning (short) ----
LEARN = {"dcgan": 60, "vae": 200, "vaegan": 80}  # steps of a short CPU run (quick settings)


@pytest.mark.parametrize("model", MODELS)
def test_model_learns_the_training_statistics(model):
    """On stripes (period 8, 3 px wide), the samples' S2 and perimeter per area move well toward
    the training crops', compared with the same model untrained (whose samples are noise)."""
    torch.manual_seed(0)
    img = stripes(128, period=8, fraction=0.375)
    tr = make(model, [img])
    before = evaluate_samples(labels(tr.sample_images(32, seed=1)), img, n_phases=2)
    for step in range(LEARN[model]):
        tr.train_step(step)
    after = evaluate_samples(labels(tr.sample_images(32, seed=1)), img, n_phases=2)
    assert after["s2_error"] < 0.75 * before["s2_error"], (before["s2_error"], after["s2_error"])
    assert after["surface_error"] < 0.5 * before["surface_error"], (before["surface_error"],
                                                                    after["surface_error"])


# --------------------------------------------------------------------------------- diversity ----
def test_diversity_sees_near_identical_samples():
    img = blobs(128)
    crops = random_crops(img, 32, 16, seed=0)
    other = random_crops(img, 32, 16, seed=1)
    assert diversity(other, crops, n_phases=2)["ratio"] == pytest.approx(1.0, abs=0.15)
    copies = np.repeat(crops[:1], 16, axis=0)
    copies[::2, 0, 0] ^= 1  # near-identical: one pixel differs
    assert diversity(copies, crops, n_phases=2)["ratio"] < 0.01
    # definition: fraction of pixels whose label differs, averaged over pairs
    two = np.array([[[0, 0], [1, 1]], [[0, 1], [1, 1]]], np.uint8)
    assert mean_pairwise_distance(two, "nphase", 2) == pytest.approx(0.25)
    assert mean_pairwise_distance(two * 255, "gray") == pytest.approx(0.25)


def test_evaluate_samples_reports_statistics_errors():
    img = blobs(128)
    good = evaluate_samples(random_crops(img, 32, 16, seed=3), img, n_phases=2)
    flat = evaluate_samples(np.zeros((16, 32, 32), np.uint8), img, n_phases=2)
    assert good["fraction_error"] < 0.05 and good["surface_error"] < 0.15 and good["s2_error"] < 0.05
    assert flat["surface_error"] == pytest.approx(1.0) and flat["diversity"]["ratio"] == 0.0
    assert flat["fraction_error"] > 0.3


# ------------------------------------------------------------------------ through the driver ----
def micrograph(labels_):
    return Micrograph(labels=labels_, image=labels_.astype(np.float32), kind="nphase",
                      phase_values=[0, 255], source="blobs.png")


@pytest.mark.parametrize("model", MODELS)
def test_train_and_generate_through_the_driver(tmp_path, model):
    run = runs.create_run(tmp_path / "run", model, [micrograph(blobs(64))], preset="quick",
                          overrides=TINY[model], seed=1)
    events = []
    result = train.train(run, steps=3, callbacks=[events.append], preview_every=2)
    assert result["step"] == 3 and result["reason"] == "steps"
    previews = [e["image"] for e in events if e["type"] == "preview"]
    assert previews and previews[0].dtype == np.uint8 and previews[0].ndim == 2
    rows = runs.read_losses(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert set(trainer_class(model).loss_names) <= set(rows[0])
    torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    gen = generate.generate(run, count=4, seed=2)
    assert gen.array.shape == (4, 32, 32) and gen.array.dtype == np.uint8
    assert set(np.unique(gen.array)) <= {0, 1} and gen.phase_values == [0, 255]
    assert np.array_equal(gen.array, generate.generate(run, count=4, seed=2).array)


def test_driver_resume_equals_uninterrupted_training(tmp_path):
    def weights(run):
        state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["state"]
        return state["decoder"]

    over = TINY["vaegan"]
    a = runs.create_run(tmp_path / "a", "vaegan", [micrograph(blobs(64))], overrides=over)
    b = runs.create_run(tmp_path / "b", "vaegan", [micrograph(blobs(64))], overrides=over)
    train.train(a, steps=4, preview_every=0)
    train.train(b, steps=2, preview_every=0)
    train.train(b, steps=4, preview_every=0)
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ------------------------------------------------------- VAE keeps every phase (issue 16) ----
def test_keep_every_phase_decoding_on_a_blurry_softmax():
    """A minority phase whose probability is everywhere ~0.15 never wins a plain argmax; the
    calibrated decoding gives it its mean probability as a fraction, where it is most likely."""
    from matgen_core.models.vae import keep_every_phase

    rng = np.random.default_rng(0)
    p2 = 0.10 + 0.08 * rng.random((4, 16, 16))           # blurry: always below the others
    p0 = (1 - p2) * (0.3 + 0.4 * rng.random((4, 16, 16)))
    probs = np.stack([p0, 1 - p2 - p0, p2], axis=1).astype(np.float32)
    assert (probs.argmax(1) == 2).sum() == 0             # plain argmax drops phase 2
    out = keep_every_phase(probs)
    assert out.shape == probs.shape and np.allclose(out.sum(1), 1, atol=1e-5)
    lab = out.argmax(1)
    frac = np.bincount(lab.ravel(), minlength=3) / lab.size
    assert frac == pytest.approx(probs.mean(axis=(0, 2, 3)), abs=0.01)
    assert p2[lab == 2].mean() > p2[lab != 2].mean()     # chosen where phase 2 is most likely
    two = np.stack([np.full((1, 4, 4), 0.7), np.full((1, 4, 4), 0.3)], 1).astype(np.float32)
    assert np.isfinite(keep_every_phase(two)).all()


def test_briefly_trained_vae_samples_keep_every_phase():
    """The bundled example (3 phases, a 13 % binder film): 16 samples of a briefly trained
    VAE hold every phase near its training fraction (plain argmax gave 0.0 % binder)."""
    from pathlib import Path

    from matgen_core import io

    example = Path(__file__).resolve().parents[1] / "assets" / "example_electrode.png"
    img = io.require_phases(io.read_micrograph(example)).labels
    truth = np.bincount(img.ravel(), minlength=3) / img.size
    torch.manual_seed(0)
    tr = make("vae", [img], n_phases=3, img_size=32, channels=[8, 16, 16, 32, 32], batch_size=8)
    for step in range(60):
        tr.train_step(step)
    got = labels(tr.sample_images(16, seed=0))
    frac = np.bincount(got.ravel(), minlength=3) / got.size
    assert (frac > 0.05).all(), frac
    assert frac == pytest.approx(truth, abs=0.1), (frac, truth)
    rec = labels(tr.reconstruct(tr.preview_crops.numpy()))
    assert len(np.unique(rec)) == 3  # reconstructions keep the binder too


@pytest.mark.parametrize("model", MODELS)
def test_resuming_uses_the_configs_learning_rates(model):
    trained = make(model, [blobs(64)])
    trained.train_step(0)
    keys = [k for k in ("lr", "lr_g", "lr_d") if k in trained.config]
    resumed = make(model, None, **{k: trained.config[k] / 10 for k in keys})
    resumed.load_state_dict(trained.state_dict())
    rates = {g["lr"] for opt in resumed.optimizers().values() for g in opt.param_groups}
    assert rates == {trained.config[k] / 10 for k in keys}
    for name, opt in resumed.optimizers().items():  # the Adam moments come from the checkpoint
        saved = next(iter(trained.optimizers()[name].state.values()))["exp_avg"]
        assert torch.equal(next(iter(opt.state.values()))["exp_avg"], saved)
