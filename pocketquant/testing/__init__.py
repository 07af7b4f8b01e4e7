"""Builders for tests and benchmarks only: tiny random checkpoints, synthetic GGUF files and
ctypes bindings to llama.cpp's reference quantizers. No production module imports this package."""
