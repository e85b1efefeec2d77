"""Tests of post-training quantization: methods/ptq (quantizers, AdaRound, reconstruction), the PTQ run
kind."""
