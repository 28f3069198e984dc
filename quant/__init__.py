"""Quantization: the integer contract, the model format, the golden model and QAT."""
