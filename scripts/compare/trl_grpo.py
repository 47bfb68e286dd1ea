"""TRL's GRPOTrainer on a random Qwen3, timed: the helpers shared by the
benchmark scripts (``gpu_compare.py`` on the GPU, ``grpo_step_trl.py`` on the
CPU).

The model is a ``Qwen3ForCausalLM`` built from a ``Qwen3Config`` with random
weights; the tokenizer is word level over the whole vocabulary (the word
``t17`` is token 17, so a prompt of n words is n tokens; ids 0, 1 and 2 are
the unknown, padding and end-of-sequence tokens ``<unk>``, ``<pad>`` and
``<eos>``, so no special token is a prefix of a word; prompts use ids from 3
up).
Completions are forced to ``max_completion_length`` tokens with
``min_new_tokens``, so every completion has full length. The trainer runs
``steps`` optimizer steps; a callback times each one (generation, rewards,
scoring, backward and update) and records the peak CUDA memory when on a GPU.

Needs torch, transformers, trl and datasets; imported lazily so that the
scripts can run their other parts without them.
"""

import random
import tempfile
import time


def random_tokens(n, vocab, seed, low=0):
    """``n`` pseudo-random ids in ``[low, vocab)`` (Python's ``random``)."""
    rng = random.Random(seed)
    return [rng.randrange(low, vocab) for _ in range(n)]


def word_tokenizer(vocab):
    """A fast tokenizer whose word ``t<i>`` is token ``i`` (for ``i >= 3``).

    The special tokens have names of their own: transformers matches special
    tokens inside words, so a padding token called ``t1`` would split
    ``t123`` into ``t1`` and an unknown ``23``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab_map = {"<unk>": 0, "<pad>": 1, "<eos>": 2}
    vocab_map.update({f"t{i}": i for i in range(3, vocab)})
    tk = Tokenizer(models.WordLevel(vocab_map, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>",
                                   pad_token="<pad>", eos_token="<eos>")


def qwen3_config(*, vocab, hidden, intermediate, layers, heads, kv_heads,
                 head_dim, rope_theta, max_position_embeddings=40960):
    """A tied-embedding ``Qwen3Config`` (rope settings for transformers 4 and 5)."""
    import transformers
    from transformers import Qwen3Config

    if int(transformers.__version__.split(".")[0]) >= 5:
        rope = {"rope_parameters": {"rope_type": "default", "rope_theta": rope_theta}}
    else:
        rope = {"rope_theta": rope_theta}
    return Qwen3Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, head_dim=head_dim, rms_norm_eps=1e-6,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        pad_token_id=1, eos_token_id=2, bos_token_id=None, **rope)


def time_grpo_steps(model, tokenizer, *, vocab, prompts, prompt_len, group,
                    tokens, micro, steps=2, bf16=False, use_cpu=False,
                    prompt_texts=None, peft_config=None, **config):
    """Runs ``steps`` GRPO steps of TRL on ``model``; returns a dict with
    ``step_seconds`` (one per step), ``peak_gib`` (per step, CUDA only),
    ``steps_with_nonfinite_grads`` and ``train_wall_seconds``.

    Each step: ``prompts`` prompts of ``prompt_len`` tokens x ``group``
    completions of ``tokens`` tokens, micro-batches of ``micro`` completions,
    loss dapo, beta 0, one iteration, a random reward. ``prompt_texts``
    replaces the random prompts (``prompts * steps`` of them are used).
    ``peft_config`` (a PEFT ``LoraConfig``) trains adapters instead of the
    whole model. Further keyword arguments go to ``GRPOConfig`` (e.g.
    ``gradient_checkpointing=False``; TRL turns it on by default).
    """
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    cuda = next(model.parameters()).is_cuda
    if prompt_texts is None:
        prompt_texts = [" ".join(f"t{t}" for t in random_tokens(prompt_len, vocab, 1000 + i, low=3))
                        for i in range(prompts * steps)]
    dataset = Dataset.from_dict({"prompt": list(prompt_texts)})

    def reward(completions, **_kwargs):
        return [random.random() for _ in completions]

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.peaks, self.start = [], [], None
            self.nonfinite_steps = 0

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            # A random bf16 model can produce non-finite gradients; zero them
            # so that the weights stay finite and the next step runs the
            # same work (one pass over the gradients, negligible).
            bad = False
            for p in (model.parameters() if model is not None else []):
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    bad = True
                    torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
            self.nonfinite_steps += int(bad)

        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.start)
            if cuda:
                self.peaks.append(torch.cuda.max_memory_allocated() / 2**30)

    completions = prompts * group
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp, per_device_train_batch_size=micro,
            gradient_accumulation_steps=completions // micro,
            num_generations=group, max_completion_length=tokens,
            loss_type="dapo", beta=0.0, num_iterations=1, learning_rate=1e-6,
            temperature=1.0, max_steps=steps, logging_steps=1, save_strategy="no",
            report_to="none", bf16=bf16, use_cpu=use_cpu, shuffle_dataset=False,
            seed=0, generation_kwargs={"min_new_tokens": tokens},
            dataloader_num_workers=0, **config)
        timer = Timer()
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args,
                              train_dataset=dataset, processing_class=tokenizer,
                              callbacks=[timer], peft_config=peft_config)
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
    lengths = [r.get("completions/mean_length") for r in trainer.state.log_history
               if "completions/mean_length" in r]
    return {
        "step_seconds": timer.times,
        "peak_gib": timer.peaks,
        "train_wall_seconds": wall,
        "steps_with_nonfinite_grads": timer.nonfinite_steps,
        "mean_completion_length": lengths,
    }
