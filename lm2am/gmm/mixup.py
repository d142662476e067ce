"""Seeded Gaussian mix-up (``gmm-est --mix-up``), so GMM training is reproducible.

Kaldi's ``AmDiagGmm::SplitByCount`` picks how many Gaussians each pdf gets and splits the
heaviest component of a pdf until it has them (``DiagGmm::Split``): halve its weight, copy it,
and move the two means apart by ``perturb_factor * r * sqrt(inv_var)`` with ``r ~ N(0, I)``. In
kaldi-hmm-gmm 1.1.4, ``r`` comes from ``khg::RandnVector``, a ``std::mt19937`` seeded by
``std::random_device`` on every call: hardware entropy that no API can seed, so every run gave
a different model. Here Kaldi still does the targets and the split (with ``perturb_factor=0``),
and the perturbation is replayed from a seeded numpy generator in Kaldi's order.
"""
from __future__ import annotations

import numpy as np

from lm2am.errors import Lm2amError


def split_by_count(am, state_occs: np.ndarray, target_components: int, perturb_factor: float,
                   power: float, min_count: float, rng: np.random.Generator) -> None:
    """``AmDiagGmm.split_by_count`` of ``am`` in place, with the mean perturbation drawn from
    ``rng`` (same inputs and generator state: same model, bit for bit)."""
    before = [np.asarray(am.get_pdf(p).weights, np.float32).reshape(-1).copy() for p in range(am.num_pdfs)]
    am.split_by_count(state_occs=np.asarray(state_occs, np.float32), target_components=target_components,
                      perturb_factor=0.0, power=power, min_count=min_count)
    for p in range(am.num_pdfs):
        gmm = am.get_pdf(p)  # a reference into am
        n0, n1 = before[p].size, int(gmm.num_gauss)
        if n1 == n0:
            continue
        w = np.zeros(n1, np.float32)
        w[:n0] = before[p]
        inv_vars = np.asarray(gmm.inv_vars, np.float64)
        means_invvars = np.array(gmm.means_invvars, np.float64)
        for c in range(n0, n1):  # DiagGmm::Split's loop
            k = int(np.argmax(w[:c]))  # the first heaviest, as Kaldi's strict '>' scan
            w[k] /= 2
            w[c] = w[k]
            r = perturb_factor * rng.standard_normal(inv_vars.shape[1]) * np.sqrt(inv_vars[k])
            means_invvars[c] = means_invvars[k] + r
            means_invvars[k] -= r
        if not np.array_equal(w, np.asarray(gmm.weights, np.float32).reshape(-1)):
            # the replay must split the components Kaldi split, or the pairs are wrong
            raise Lm2amError(f"mix-up of pdf {p}: replayed split order differs from Kaldi's")
        gmm.set_invvars_and_means(inv_vars.astype(np.float32), (means_invvars / inv_vars).astype(np.float32))
    am.compute_gconsts()
