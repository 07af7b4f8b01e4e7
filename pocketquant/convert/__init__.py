"""HF -> GGUF conversion for the Llama family (our own converter on gguf-py's GGUFWriter)."""

from pocketquant.convert.errors import ConversionError
from pocketquant.convert.hf_to_gguf import OUTTYPES, convert_hf_to_gguf

__all__ = ["OUTTYPES", "ConversionError", "convert_hf_to_gguf"]
