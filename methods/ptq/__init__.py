"""Post-training quantization: round-to-nearest, AdaRound, BRECQ, QDrop and TTAQ-recon through the one
quantizer interface, with one reconstruction engine (``reconstruct.py``) configured per method
(``stages.py``)."""
from methods.ptq.base import PtqMethod

__all__ = ["PtqMethod"]
