"""`python -m core.bench`: our LSTM against torch.nn.LSTM, same model shape, same weights, interleaved.

Both sides are the whole language model: embedding -> LSTM -> dropout -> linear head. Ours is
core.model.PoetryLM (core.lstm.LSTM inside, told each row's length); the reference is the same module
built around torch.nn.LSTM (oneDNN on CPU, cuDNN on GPU), fed the padded batch as torch users usually do:
it computes the padding too, and the masked loss ignores it, so both train the same model on the same
tokens. Before timing, the two are checked to agree (logits and gradients, float32).

Method (what each number means):
- batches: the poem lengths of the corpus's train split, batched as the trainer does (core.corpus
  poem_batches, bucketed by length); a few batches drawn with a fixed seed form one "unit" of work. When
  the corpus is not available, the lengths come from SYNTHETIC_LENGTHS (the quantangshi / tang300 mix).
- timing: the two sides alternate (ours, reference, reference, ours, ...), warm-up units excluded, and each
  figure is the median over --repeats units. tokens/s counts real (non-padded) target tokens only.
  --clock wall (default) times elapsed seconds; --clock cpu this process's CPU seconds, which with
  --threads 1 stays meaningful when other processes share the machine (elapsed time then measures them).
  train = forward + backward + Adam step; infer = forward in eval mode without autograd;
  recurrent = the LSTM alone, forward + backward (embedding and head are identical on both sides);
  generation = a 4x7 poem, 32 tokens one at a time with batch 1 (model steps; each fed the argmax).
- precision: fp32 (default: exact on both sides) or bf16, where train, infer and recurrent run both sides
  under a bfloat16 autocast (the trainer's `--precision bf16`): ours multiplies in bf16 and keeps its state
  in float32; nn.LSTM runs oneDNN's RNN primitive in bf16. The agreement check stays float32.
- peak_rss_mb: the peak resident set (VmHWM) of a fresh child process that holds one side's model only and
  runs two training units and one inference unit; the peak is reset (/proc/self/clear_refs) once the
  corpus is loaded and the model built, so it is baseline_rss_mb (torch, batches, model) plus the most
  that training and inference added. (Not ru_maxrss: a forked child inherits its parent's, and the corpus
  loading would dominate it.) On CUDA, peak_gpu_mb is max_memory_allocated.
- ratios are ours / reference in tokens per second (> 1: ours is faster).
"""
