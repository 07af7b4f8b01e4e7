"""Phone packages: a deterministic zip with the GGUF, an Ollama Modelfile, a device README and a
manifest; `verify_package` checks one before it is copied to a device."""

from pocketquant.package.build import build_package, head_commit, tool_versions
from pocketquant.package.verify import VerifyResult, verify_package

__all__ = ["VerifyResult", "build_package", "head_commit", "tool_versions", "verify_package"]
