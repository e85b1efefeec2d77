"""Tests of post-training quantization: methods/ptq (quantizers, AdaRound, reconstruction) and the PTQ run kind."""
