"""HF -> GGUF conversion: our native converter (one module per model family in families/) and
llama.cpp's own converter as the backend for any other architecture."""

from pocketquant.convert.errors import ConversionError
from pocketquant.convert.hf_to_gguf import OUTTYPES, convert_hf_to_gguf

__all__ = ["OUTTYPES", "ConversionError", "convert_hf_to_gguf"]
