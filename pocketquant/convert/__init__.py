"""HF -> GGUF conversion: our native converter (one module per model family in families/) and
llama.cpp's own converter as the backend for any other architecture (backend.py)."""

from pocketquant.convert.backend import BACKENDS, convert_model
from pocketquant.convert.errors import ConversionError
from pocketquant.convert.hf_to_gguf import OUTTYPES, convert_hf_to_gguf

__all__ = ["BACKENDS", "OUTTYPES", "ConversionError", "convert_hf_to_gguf", "convert_model"]
