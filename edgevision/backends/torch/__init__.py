"""PyTorch reference backend (workstation only; torch is imported inside the runner's methods)."""

from edgevision.backends.torch.runner import TorchRunner

__all__ = ["TorchRunner"]
