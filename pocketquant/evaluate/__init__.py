"""Evaluation: every variant measured the same way (size, llama.cpp-style perplexity, KL divergence
and top-1 agreement against the base, runtime, generations, multiple-choice accuracy).

Modules (one job each; import the one you need, torch is only loaded where scoring happens):
  corpus     load_corpus(name, path) -> Corpus            default / wikitext2 / any text file
  chunks     make_chunks(...)                             llama.cpp's chunking (BOS, second half scored)
  language_model  LanguageModel                           the interface both engines implement
  model      open_model(path) -> LanguageModel            .gguf -> llama.cpp, HF dir -> transformers
  llamacpp   LlamaCppModel                                 llama-cpp-python low-level engine
  layer_groups  LayerGroupedLlamaCpp, plan_groups         a GGUF too big to hold: one group of layers
                                                          at a time, the same logits bit for bit
  hf         TransformersModel, HFTokenizer                transformers engine (HF dirs, NF4), tokenizer
  scoring    score_rows / kl_full                        vectorized NLL, exact KL (+ top-k for error analysis)
  output_head  output_head(config) -> OutputHead          a family's logits from final hidden states
  reference  compute/save/load_reference, BaseOutput      the base's hidden states (streamed layer by
                                                          layer) -> exact base logits (W_out in slices)
  quality    perplexity(), evaluate_quality()             PPL, KLD stats, top-1 agreement (+ per-token scores)
  stats      perplexity(), paired_difference(), ...       llama.cpp's error bars; paired comparisons
  size       model_size(path, base_n_params)              bytes, GiB, bpw, reduction vs BF16
  runtime    measure_runtime(path, text, threads=...)     load, pp/tg tokens/s, TTFT, peak RSS (and
                                                          the generations of a layer-grouped model)
  generate   generate_texts(model, prompts)               greedy completions (chat template, stop reason)
  choice     load_tasks(), mc_accuracy()                  multiple-choice accuracy by log-likelihood
  metrics    build_metrics(), write_json()                metrics JSON; per-token scores files
  variant    build_reference(), evaluate_variant()        the two calls the pipeline stages make
"""
