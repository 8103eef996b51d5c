"""Every private part of PyTorch that shakegpt touches, in this one module.

tests/test_private_hooks.py checks that it is still there and still behaves as used here, so
a torch upgrade that changes it fails that test by name rather than a Muon run obscurely.

- torch.optim._muon._zeropower_via_newtonschulz, replaced for the length of a step:
  optimizers.MuonWithAdamW (float32 on a CPU). torch.optim.Muon takes no function of its own to
  orthogonalise with.

Replaced by a public API: the TensorBoard logger's hparams summaries go through the public
torch.utils.tensorboard.FileWriter (was SummaryWriter._get_file_writer).
"""

from __future__ import annotations

import contextlib

import torch.optim._muon as torch_muon

# torch's own orthogonalisation: (grad, ns_coefficients, ns_steps, eps) -> tensor.
muon_newton_schulz = torch_muon._zeropower_via_newtonschulz


@contextlib.contextmanager
def muon_orthogonalises_with(function):
    """Within the block torch.optim.Muon's steps orthogonalise through function, called as torch's
    own. Private: Muon.step calls this module-level function of torch.optim._muon by name."""
    torch_muon._zeropower_via_newtonschulz = function
    try:
        yield
    finally:
        torch_muon._zeropower_via_newtonschulz = muon_newton_schulz
