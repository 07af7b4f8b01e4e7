"""pocketquant: quantize causal LMs to GGUF and NF4, measure what was lost, package for the phone."""

__version__ = "0.1.0"
