"""What the loop hands the step functions and the regularizers' hooks: the D update count that
lazy regularization and ADA's interval run on, each D step's own noise phase, the data's epoch
that top-k decays by, and the hooks run after D's optimizer step (weight clipping, ADA)."""

from __future__ import annotations

import pytest
import torch
from test_what_d_sees import Steps

from conftest import tiny_config, write_config
from ganforge.config import load_config
from ganforge.run import RunDir
from ganforge.training import loop


def test_the_loop_numbers_d_updates_phases_and_epochs(tmp_path, monkeypatch):
    steps, d_steps, batch, samples = 5, 2, 8, 16
    cfg = tiny_config(tmp_path / "run", data={"kind": "gaussian_grid", "num_samples": samples},
                      generator={"kind": "mlp", "width": 8}, discriminator={"kind": "mlp", "width": 8},
                      train={"steps": steps, "batch_size": batch, "seed": 0, "device": "cpu",
                             "d_steps_per_g_step": d_steps},
                      samples={"every": steps, "num": 8}, checkpoint={"every": steps})
    config, resolved = load_config(write_config(tmp_path, cfg))
    calls = []
    d_step, g_step = loop.discriminator_step, loop.generator_step

    def recording_d(*args, **kwargs):
        calls.append(("D", kwargs["d_update"], kwargs["phase"]))
        return d_step(*args, **kwargs)

    def recording_g(*args, **kwargs):
        calls.append(("G", kwargs["phase"], kwargs["epoch"]))
        return g_step(*args, **kwargs)

    monkeypatch.setattr(loop, "discriminator_step", recording_d)
    monkeypatch.setattr(loop, "generator_step", recording_g)
    run = RunDir(config.output.dir)
    run.create()
    loop.train(config, resolved, run, progress=False)
    run.release_lock()
    expected = []
    for s in range(steps):
        # D updates are counted over the whole run (lazy intervals, ADA's interval); each D step of
        # a G step has its own noise phase; G is given the data's epoch as its step started (that of
        # the previous step's last real batch: StudioGAN decays top-k's k after the step whose batch
        # began an epoch).
        expected += [("D", s * d_steps + i, i) for i in range(d_steps)]
        expected.append(("G", -1, max(0, s * d_steps - 1) * batch // samples))
    assert calls == expected


def test_the_hooks_after_d_steps_run_in_the_loop():
    clipped = Steps(["weight_clipping"])
    assert max(p.abs().max().item() for p in clipped.state.D.parameters()) > 0.01
    clipped.d_step()
    assert max(p.abs().max().item() for p in clipped.state.D.parameters()) <= 0.01
    # ADA counts the signs of D's real outputs in the D step and adjusts p after the training
    # step (StyleGAN2-ADA: after the iteration that completes each ada_interval), not after each D
    # update: with interval 1, p moves off where it started (0.5) once the step ends.
    ada = Steps(["ada"])
    [(_, reg)] = ada.state.regularizers
    reg.interval = 1
    ada.d_step()
    assert float(reg.p) == pytest.approx(0.5, abs=1e-9) and float(reg._signs) == len(ada.real)
    reg.after_step(1)
    assert float(reg.p) != pytest.approx(0.5, abs=1e-9)
    assert torch.isfinite(reg.p)


@pytest.mark.parametrize(("loss", "kinds"), [("non_saturating", []), ("relativistic_average", []),
                                            ("hinge", ["r1", "orthogonal"])],
                         ids=["non_saturating", "relativistic_average", "hinge+r1+orthogonal"])
def test_each_step_follows_the_gradient_of_its_loss_on_what_d_was_given(loss, kinds):
    # D's gradient in its step is that of loss.d_loss(D(real), D(fake)) plus the regularizers' D
    # terms, on the inputs D was given; G's in its step that of loss.g_loss(D(G(z)), D(real)) plus
    # their G terms. Learning rates 0, so that the networks can run again on the recorded inputs.
    steps = Steps(kinds, loss=loss)
    state, the_loss = steps.state, steps.loss
    for _, reg in state.regularizers:
        reg.weight = 1.0  # large enough to matter in the gradients
    for opt in (state.opt_d, state.opt_g):
        for group in opt.param_groups:
            group["lr"] = 0.0
    inputs: list[torch.Tensor] = []
    hooks = [net.register_forward_hook(lambda module, args, out: inputs.append(args[0].detach().clone()))
             for net in (state.G, state.D)]

    def gradients(net):
        return [p.grad.clone() for p in net.parameters()]

    steps.d_step()
    _, real_in, fake_in = inputs[:3]  # G's noise, then D on the reals and on the fakes
    got = gradients(state.D)
    for hook in hooks:
        hook.remove()
    state.D.zero_grad()
    real_logits, fake_logits = state.D(real_in, steps.labels), state.D(fake_in)
    total = the_loss.d_loss(real_logits, fake_logits)
    for _, reg in state.regularizers:
        term = reg.d_term(0, state.D, real_in, fake_in, steps.labels, None, real_logits, fake_logits, None)
        total = total + (term.loss if term is not None else 0)
    total.backward()
    for a, b in zip(got, gradients(state.D)):
        torch.testing.assert_close(a, b)
    inputs.clear()
    hooks = [state.G.register_forward_hook(lambda module, args, out: inputs.append(args[0].detach().clone()))]
    steps.g_step()
    z = inputs[0]
    got = gradients(state.G)
    state.G.zero_grad()
    fake = state.G(z)
    real_logits = state.D(steps.real, steps.labels) if the_loss.g_needs_real else None
    total = the_loss.g_loss(state.D(fake), real_logits)
    for _, reg in state.regularizers:
        term = reg.g_term(0, state.G, state.D, z, None, fake, None)
        total = total + (term.loss if term is not None else 0)
    total.backward()
    for a, b in zip(got, gradients(state.G)):
        torch.testing.assert_close(a, b)
