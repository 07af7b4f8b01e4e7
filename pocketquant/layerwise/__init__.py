"""Run a Hugging Face causal LM one decoder layer at a time, with its weights left on disk.

A 3B model in float32 is 12 GB and an 8B one 32 GB; the machines pocketquant runs on have 12-16.
Every stage that needs the base model's activations (the evaluation reference, calibration) or
rewrites its weights (NF4) therefore streams it:

  weights   CheckpointWeights(dir)        tensors of a safetensors checkpoint (sharded or not), read
                                          on demand with plain file reads (no mmap, no whole-file load)
  writer    SafetensorsWriter(path)       a safetensors file written tensor by tensor, the same bytes
                                          as safetensors.torch.save_file
  forward   LayerwiseModel(dir)           transformers' own modules on the meta device; each decoder
                                          layer is materialized, every sequence pushed through it, and
                                          freed before the next
"""
